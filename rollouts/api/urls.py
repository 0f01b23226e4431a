from django.urls import include, path

urlpatterns = [
    path("", include("rollouts.api.rollouts")),
    path("", include("rollouts.api.evaluations")),
    path("", include("rollouts.api.plans")),
    path("", include("rollouts.api.releases")),
    path("", include("rollouts.api.incidents")),
    path("", include("rollouts.api.fleet")),
    # The people's device list and detail show each device's deployment; devices report theirs.
    path("", include("rollouts.api.devices")),
    path("", include("rollouts.api.protocol")),
]
