"""The fleet-wide switches and SafeRoll's own state: emergency stop, autopilot heartbeat, alerts."""

from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from devices.models import Device
from rollouts.services.emergency import emergency_stop_lift, emergency_stop_raise
from saferoll.core.alerts import alert_acknowledge
from saferoll.core.api.schema import ErrorSerializer
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import Alert
from saferoll.core.status import autopilot_status, emergency_status


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, trim_whitespace=True)


def writes_need(perm: str) -> type[permissions.BasePermission]:
    """Reads for every signed-in person; writes only with `perm`."""

    class WritesNeed(permissions.BasePermission):
        message = f"Your role does not allow this ({perm})."

        def has_permission(self, request, view):
            if not (request.user and request.user.is_authenticated):
                return False
            return request.method in permissions.SAFE_METHODS or request.user.has_perm(perm)

    return WritesNeed


def fleet_body() -> dict:
    by_status = dict(Device.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {
        "emergency_stop": emergency_status(),
        "autopilot": autopilot_status(),
        "devices_by_status": by_status,
    }


@extend_schema(responses=inline_serializer("Fleet", {"emergency_stop": serializers.DictField()}))
@api_view(["GET"])
def fleet(request):
    return Response(fleet_body())


@extend_schema(
    request=ReasonSerializer,
    responses={
        200: inline_serializer("FleetAfterStop", {"emergency_stop": serializers.DictField()}),
        409: OpenApiResponse(ErrorSerializer, description="The emergency stop is already on."),
    },
)
@api_view(["POST"])
@permission_classes([writes_need("saferoll.emergency_stop")])
def emergency_stop(request):
    """Raise the emergency stop: every active rollout pauses; nothing starts or promotes until lifted."""
    data = _reason(request)
    if emergency_stop_raise(actor=request.user, reason=data["reason"]) is None:
        raise ServiceRefused("The emergency stop is already on.")
    return Response(fleet_body())


@extend_schema(
    request=ReasonSerializer,
    responses={
        200: inline_serializer("FleetAfterLift", {"emergency_stop": serializers.DictField()}),
        409: OpenApiResponse(ErrorSerializer, description="The emergency stop is not on."),
    },
)
@api_view(["POST"])
@permission_classes([writes_need("saferoll.emergency_stop")])
def emergency_stop_lift_view(request):
    data = _reason(request)
    if emergency_stop_lift(actor=request.user, reason=data["reason"]) is None:
        raise ServiceRefused("The emergency stop is not on.")
    return Response(fleet_body())


def _reason(request) -> dict:
    serializer = ReasonSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class AlertSerializer(serializers.ModelSerializer):
    rollout_id = serializers.CharField(
        source="rollout.rollout_id", default=None, read_only=True, allow_null=True
    )
    device_id = serializers.CharField(
        source="device.device_id", default=None, read_only=True, allow_null=True
    )

    class Meta:
        model = Alert
        fields = [
            "id",
            "level",
            "kind",
            "title",
            "message",
            "rollout_id",
            "device_id",
            "created_at",
            "acknowledged_at",
            "acknowledged_by",
        ]


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Alert.objects.select_related("rollout", "device")
    serializer_class = AlertSerializer
    permission_classes = [writes_need("saferoll.change_alert")]
    filterset_fields = ["level", "kind"]
    # Ids are numbers: anything else is no alert's address (404), never a failed integer lookup.
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self):
        queryset = super().get_queryset()
        open_only = self.request.query_params.get("open")
        if open_only in ("1", "true"):
            queryset = queryset.filter(acknowledged_at__isnull=True)
        return queryset

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        alert = get_object_or_404(Alert, pk=pk)
        return Response(AlertSerializer(alert_acknowledge(alert=alert, actor=request.user)).data)


router = SimpleRouter(trailing_slash=False)
router.register("alerts", AlertViewSet, basename="alert")

urlpatterns = [
    path("fleet", fleet, name="fleet"),
    path("fleet/emergency-stop", emergency_stop, name="emergency-stop"),
    path("fleet/emergency-stop/lift", emergency_stop_lift_view, name="emergency-stop-lift"),
    *router.urls,
]
