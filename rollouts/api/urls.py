from django.urls import include, path

urlpatterns = [
    path("", include("rollouts.api.rollouts")),
    path("", include("rollouts.api.evaluations")),
    path("", include("rollouts.api.plans")),
    path("", include("rollouts.api.releases")),
    path("", include("rollouts.api.incidents")),
]
