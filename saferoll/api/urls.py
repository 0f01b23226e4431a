from django.urls import include, path

urlpatterns = [
    path("", include("saferoll.api.audit")),
]
