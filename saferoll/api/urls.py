from django.urls import include, path

urlpatterns = [
    path("", include("saferoll.api.audit")),
    path("", include("saferoll.api.fleet")),
]
