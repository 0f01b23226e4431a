"""A device registers itself with the fleet enrollment key and gets its own credential."""

from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from devices import services
from saferoll.core.api.serializers import StrictSerializer
from saferoll.core.api.throttles import THROTTLED_RESPONSE, EnrollmentThrottle


class EnrollmentSerializer(StrictSerializer):
    device_id = serializers.CharField(max_length=50, validators=[services.validate_device_id])
    enrollment_key = serializers.CharField(max_length=500, trim_whitespace=False)
    ring = serializers.CharField(
        max_length=20, required=False, help_text="One of the fleet's rings; assigned by share when omitted."
    )
    variant = serializers.CharField(max_length=50, required=False, allow_blank=True, allow_null=True)
    site = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    region = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    version = serializers.CharField(
        max_length=50, required=False, allow_blank=True, default="", help_text="The app version it runs."
    )
    base_image_version = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    agent_version = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")


class EnrolledSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    token = serializers.CharField(help_text="Send it as 'Authorization: Device <token>'. Shown once.")
    ring = serializers.CharField()


class EnrollView(APIView):
    # Anonymous by design: this is how a device gets its credential. The fleet key is the check.
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [EnrollmentThrottle]

    @extend_schema(
        summary="Enroll a device with the fleet key",
        description=(
            "A new device gets a ring (by the fleet's ring shares unless given) and a token. "
            "A known device keeps its ring and gets a new token; its old token stops working."
        ),
        request=EnrollmentSerializer,
        responses={
            201: EnrolledSerializer,
            400: OpenApiResponse(description="Invalid input."),
            403: OpenApiResponse(description="Wrong enrollment key, or a revoked device."),
            429: THROTTLED_RESPONSE,
        },
        auth=[],
    )
    def post(self, request):
        serializer = EnrollmentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        device, token = services.device_enroll(**data)
        return Response(
            {"device_id": device.device_id, "token": token, "ring": device.ring},
            status=status.HTTP_201_CREATED,
        )


urlpatterns = [path("devices/enroll", EnrollView.as_view(), name="device-enroll")]
