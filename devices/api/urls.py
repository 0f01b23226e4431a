from django.urls import include, path

urlpatterns = [
    path("", include("devices.api.enrollment")),
    path("", include("devices.api.cohorts")),
]
