from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from saferoll import views
from saferoll.core.forms import locked_out_login

urlpatterns = [
    path("", views.root, name="root"),
    path("health", views.health, name="health"),
    path("metrics", views.metrics, name="metrics"),
    # The admin's sign-in answers a locked-out attempt 429 (saferoll.core.forms); ahead of the admin's.
    path("admin/login/", locked_out_login(admin.site.login)),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("saferoll.core.api.urls")),
    path("api/", include("devices.api.urls")),
    path("api/", include("rollouts.api.urls")),
    path("api/", include("telemetry.api.urls")),
    path("", include("saferoll.portal.urls")),
]

# Errors Django answers itself keep the API's error shape under /api/ (saferoll.core.api.errors).
handler400 = "saferoll.core.api.errors.bad_request"
handler404 = "saferoll.core.api.errors.not_found"
handler500 = "saferoll.core.api.errors.server_error"
