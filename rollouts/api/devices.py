"""Devices for people: list, detail, create, edit, and the device credential commands.

This module also holds what the people-facing device and cohort endpoints share: the permission
check and the translation of service errors into the API's error shape.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from devices import selectors, services
from devices.authentication import PEOPLE_AUTHENTICATION
from devices.choices import DeviceStatus
from devices.filtersets import DeviceFilterSet
from devices.models import Cohort, Device
from rollouts.models import DeviceDeployment
from rollouts.selectors import device_latest_deployment, device_list
from saferoll.core.api.permissions import ActionPermission
from saferoll.core.api.serializers import StrictSerializer

# --- shared by the people-facing device and cohort endpoints ------------------------------------


# --- serializers --------------------------------------------------------------------------------


class DeviceDeploymentSerializer(serializers.ModelSerializer):
    """One device's progress in one rollout, with the time of each step."""

    rollout_id = serializers.CharField(source="rollout.rollout_id", read_only=True)
    device_id = serializers.CharField(source="device.device_id", read_only=True)
    release = serializers.CharField(source="rollout.release.version", read_only=True)

    class Meta:
        model = DeviceDeployment
        fields = [
            "rollout_id",
            "device_id",
            "release",
            "ring",
            "state",
            "from_version",
            "attempts",
            "last_error",
            "released_at",
            "created_at",
            "state_changed_at",
            "downloading_at",
            "verified_at",
            "activated_at",
            "failed_at",
            "rolling_back_at",
            "rolled_back_at",
        ]
        read_only_fields = fields


class DeviceDeploymentDetailSerializer(DeviceDeploymentSerializer):
    """For people: also the diagnostics the device attached (002 E15)."""

    class Meta(DeviceDeploymentSerializer.Meta):
        fields = [*DeviceDeploymentSerializer.Meta.fields, "diagnostics"]
        read_only_fields = fields


class DeviceSerializer(serializers.ModelSerializer):
    """A device in the list."""

    variant = serializers.CharField(source="variant.name", read_only=True, allow_null=True)
    version = serializers.CharField(source="app_version", read_only=True)
    deployment_state = serializers.CharField(read_only=True, allow_null=True, default=None)
    deployment_rollout_id = serializers.CharField(read_only=True, allow_null=True, default=None)

    class Meta:
        model = Device
        fields = [
            "device_id",
            "ring",
            "status",
            "status_reason",
            "variant",
            "site",
            "region",
            "version",
            "last_heartbeat",
            "has_credential",
            "deployment_state",
            "deployment_rollout_id",
        ]
        read_only_fields = fields


class DeviceVersionsSerializer(serializers.Serializer):
    app = serializers.CharField(source="app_version")
    base_image = serializers.CharField(source="base_image_version")
    agent = serializers.CharField(source="agent_version")


class DeviceDetailSerializer(serializers.ModelSerializer):
    """A device with its versions, cohorts and newest deployment."""

    variant = serializers.CharField(source="variant.name", read_only=True, allow_null=True)
    version = serializers.CharField(source="app_version", read_only=True)
    versions = DeviceVersionsSerializer(source="*", read_only=True)
    cohorts: serializers.SlugRelatedField[Cohort] = serializers.SlugRelatedField(
        slug_field="name", many=True, read_only=True
    )
    deployment = serializers.SerializerMethodField()

    class Meta:
        model = Device
        fields = [
            "device_id",
            "ring",
            "status",
            "status_reason",
            "variant",
            "site",
            "region",
            "version",
            "versions",
            "last_heartbeat",
            "has_credential",
            "token_issued_at",
            "created_at",
            "cohorts",
            "deployment",
        ]
        read_only_fields = fields

    @extend_schema_field(DeviceDeploymentDetailSerializer(allow_null=True))
    def get_deployment(self, device: Device) -> dict | None:
        deployment = device_latest_deployment(device)
        return DeviceDeploymentDetailSerializer(deployment).data if deployment else None


class DeviceCreatedSerializer(DeviceDetailSerializer):
    """The new device, with its token: shown this once, only its hash is kept."""

    token = serializers.CharField(read_only=True)

    class Meta(DeviceDetailSerializer.Meta):
        fields = [*DeviceDetailSerializer.Meta.fields, "token"]
        read_only_fields = fields


class DeviceCreateSerializer(StrictSerializer):
    device_id = serializers.CharField(max_length=50, validators=[services.validate_device_id])
    ring = serializers.CharField(
        max_length=20, required=False, help_text="One of the fleet's rings; assigned by share when omitted."
    )
    variant = serializers.CharField(max_length=50, required=False, allow_blank=True, allow_null=True)
    site = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    region = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    app_version = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    base_image_version = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    agent_version = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")


class DeviceUpdateSerializer(StrictSerializer):
    site = serializers.CharField(max_length=100, required=False, allow_blank=True)
    region = serializers.CharField(max_length=100, required=False, allow_blank=True)
    ring = serializers.CharField(max_length=20, required=False)
    variant = serializers.CharField(max_length=50, required=False, allow_blank=True, allow_null=True)
    status = serializers.ChoiceField(choices=DeviceStatus.choices, required=False)
    status_reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    def validate(self, attrs):
        if not attrs:
            raise ValidationError(f"Nothing to change: give at least one of {', '.join(self.fields)}.")
        return attrs


class CredentialSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    token = serializers.CharField(help_text="Shown this once: only its hash is kept.")


class RevokedSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    has_credential = serializers.BooleanField()


# --- views -------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List devices", description="Filter by ring, status, variant, site, ..."),
    retrieve=extend_schema(summary="One device: versions, heartbeat, cohorts, newest deployment"),
)
class DeviceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    authentication_classes = PEOPLE_AUTHENTICATION
    permission_classes = [ActionPermission]
    required_permissions = {
        "list": ("devices.view_device", "view devices"),
        "retrieve": ("devices.view_device", "view devices"),
        "create": ("devices.add_device", "create devices"),
        "partial_update": ("devices.change_device", "change devices"),
        "rotate_credential": ("devices.manage_device_credentials", "manage device credentials"),
        "revoke_credential": ("devices.manage_device_credentials", "manage device credentials"),
    }
    lookup_field = "device_id"
    # "enroll" is reserved (devices.services.RESERVED_DEVICE_IDS): /api/devices/enroll is enrollment.
    lookup_value_regex = r"(?!enroll$)[A-Za-z0-9._:-]+"
    filterset_class = DeviceFilterSet
    ordering_fields = ["device_id", "ring", "status", "last_heartbeat", "created_at", "app_version"]
    ordering = ["device_id"]

    def get_queryset(self):
        return device_list() if self.action == "list" else selectors.device_detail()

    def get_serializer_class(self):
        return DeviceSerializer if self.action == "list" else DeviceDetailSerializer

    def get_object(self) -> Device:
        device = self.get_queryset().filter(device_id=self.kwargs["device_id"]).first()
        if device is None:
            raise NotFound(f"No device with id {self.kwargs['device_id']}.")
        self.check_object_permissions(self.request, device)
        return device

    def _detail(self, device: Device, **extra) -> dict:
        device = selectors.device_detail().get(pk=device.pk)
        return {**DeviceDetailSerializer(device, context=self.get_serializer_context()).data, **extra}

    @extend_schema(
        summary="Register a device (its token is returned once)",
        request=DeviceCreateSerializer,
        responses={201: DeviceCreatedSerializer},
    )
    def create(self, request):
        serializer = DeviceCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device, token = services.device_create(actor=request.user, **serializer.validated_data)
        return Response(self._detail(device, token=token), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a device's site, region, ring, variant or status",
        request=DeviceUpdateSerializer,
        responses={200: DeviceDetailSerializer},
    )
    def partial_update(self, request, device_id: str):
        device = self.get_object()
        serializer = DeviceUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = services.device_update(device=device, actor=request.user, data=serializer.validated_data)
        return Response(self._detail(device))

    @extend_schema(
        summary="Issue a new device credential; the old one stops working",
        request=None,
        responses={200: CredentialSerializer},
    )
    @action(detail=True, methods=["post"], url_path="rotate-credential")
    def rotate_credential(self, request, device_id: str):
        device = self.get_object()
        token = services.device_rotate_credential(device=device, actor=request.user)
        return Response({"device_id": device.device_id, "token": token})

    @extend_schema(
        summary="Revoke a device credential",
        request=None,
        responses={200: RevokedSerializer, 404: OpenApiResponse(description="Unknown device.")},
    )
    @action(detail=True, methods=["post"], url_path="revoke-credential")
    def revoke_credential(self, request, device_id: str):
        device = self.get_object()
        device = services.device_revoke_credential(device=device, actor=request.user)
        return Response({"device_id": device.device_id, "has_credential": device.has_credential})


router = SimpleRouter(trailing_slash=False)
router.register("devices", DeviceViewSet, basename="device")
urlpatterns = router.urls
