"""Only the routes under test, so this suite does not depend on the state of the other apps' APIs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("devices.api.urls")),
    # The people's device endpoints and the device protocol live in rollouts: they show and take deployments.
    path("api/", include("rollouts.api.devices")),
    path("api/", include("rollouts.api.protocol")),
]
