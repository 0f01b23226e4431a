from django.urls import include, path

urlpatterns = [
    path("", include("saferoll.core.api.audit")),
]
