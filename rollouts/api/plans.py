"""Rollout plans over REST: stages, gate thresholds, activation window. Writes are audited.

    GET  /api/plans                 {"plans": [...], "count", "next", "previous"}
    POST /api/plans                 {"name", "stages", "gate_config"?, "description"?, ...}
    GET  /api/plans/{name or id}
    PATCH /api/plans/{name or id}

A rollout freezes its plan's stages and gates when it is created; changing a plan changes only
the rollouts created after.
"""

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from rollouts.api.rollouts import keyed_pagination
from rollouts.filtersets import RolloutPlanFilterSet
from rollouts.gates import GateConfig
from rollouts.models import RolloutPlan
from rollouts.permissions import PlanPermission
from rollouts.services import plans
from saferoll.core.api.fields import TimeOfDayField
from saferoll.core.api.schema import ErrorSerializer
from saferoll.core.errors import ServiceRefused


class PlanSerializer(serializers.ModelSerializer):
    # The activation window's ends are UTC times of day, without an offset.
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.TimeField: TimeOfDayField,
    }
    stages = serializers.JSONField(
        help_text='[{"ring": "pilot", "bake_minutes": 2, "auto_advance": true, "cohort"?: name, "rings"?: [...], '
        '"region"?: name}]; with a region a stage deploys only that region\'s devices, so a fleet ring may '
        "appear once per region (a stage without one covers every region)."
    )
    gate_config = serializers.JSONField(
        required=False, default=dict, help_text="Gate settings; see effective_gate_config for every key."
    )
    effective_gate_config = serializers.SerializerMethodField()
    waves = serializers.JSONField(
        required=False, default=dict, help_text='{"per_minute": 50, "growth": 2.0}; empty: a stage at once.'
    )
    retries = serializers.JSONField(
        required=False, default=dict, help_text='{"count": 2, "backoff_seconds": 60}; empty: no retry.'
    )
    # No default: the stubs allow only a mapping, and a plan created without windows gets none.
    maintenance_windows = serializers.JSONField(
        required=False,
        help_text='[{"region"?: name, "site"?: name, "time_zone": "Europe/Berlin", "start": "02:00", '
        '"end": "05:00", "weekdays"?: ["mon", ...]}]; site over region over the whole fleet; '
        "an end before the start spans midnight; weekdays default to every day.",
    )

    class Meta:
        model = RolloutPlan
        fields = [
            "id",
            "name",
            "description",
            "stages",
            "gate_config",
            "effective_gate_config",
            "activation_window_start",
            "activation_window_end",
            "waves",
            "retries",
            "maintenance_windows",
            "is_default",
            "created_at",
        ]
        read_only_fields = ["id", "created_at", "effective_gate_config"]

    def validate_stages(self, value):
        return _checked(plans.plan_clean_stages, value)

    def validate_gate_config(self, value):
        return _checked(plans.plan_clean_gate_config, value)

    def validate_waves(self, value):
        return _checked(plans.plan_clean_waves, value)

    def validate_retries(self, value):
        return _checked(plans.plan_clean_retries, value)

    def validate_maintenance_windows(self, value):
        return _checked(plans.plan_clean_maintenance_windows, value)

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_effective_gate_config(self, plan: RolloutPlan) -> dict:
        """The thresholds a rollout created now would freeze: the plan's settings over the defaults."""
        try:
            return GateConfig.from_dict(plan.gate_config).to_dict()
        except ValueError:
            return {}


def _checked(clean, value):
    """A plan's stages or gates checked as the serializer validates its fields, so that every field's
    error is reported at once."""
    try:
        return clean(value)
    except ServiceRefused as exc:
        raise serializers.ValidationError(exc.message) from exc


@extend_schema_view(
    list=extend_schema(summary="List rollout plans"),
    retrieve=extend_schema(
        summary="A rollout plan (by name or id)",
        responses={200: PlanSerializer, 404: OpenApiResponse(ErrorSerializer)},
    ),
    create=extend_schema(
        summary="Create a rollout plan",
        responses={
            201: PlanSerializer,
            400: OpenApiResponse(ErrorSerializer),
            403: OpenApiResponse(ErrorSerializer),
        },
    ),
    partial_update=extend_schema(
        summary="Change a rollout plan",
        responses={
            200: PlanSerializer,
            400: OpenApiResponse(ErrorSerializer),
            403: OpenApiResponse(ErrorSerializer),
            404: OpenApiResponse(ErrorSerializer),
        },
    ),
)
class PlanViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = RolloutPlan.objects.order_by("name")
    serializer_class = PlanSerializer
    permission_classes = [PlanPermission]
    filterset_class = RolloutPlanFilterSet
    pagination_class = keyed_pagination("plans")
    ordering_fields = ["name", "created_at"]
    lookup_url_kwarg = "plan"
    lookup_value_regex = r"[^/]+"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_object(self) -> RolloutPlan:
        key = self.kwargs["plan"]
        plan = RolloutPlan.objects.filter(name=key).first()
        # ASCII digits only: str.isdigit() also accepts characters such as "²" that int() refuses.
        if plan is None and key.isascii() and key.isdigit():
            plan = RolloutPlan.objects.filter(pk=int(key)).first()
        if plan is None:
            raise NotFound(f"Plan {key} not found.")
        self.check_object_permissions(self.request, plan)
        return plan

    def create(self, request, *args, **kwargs):
        data = PlanSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = {key: value for key, value in data.validated_data.items()}
        plan = plans.plan_create(actor=request.user, **fields)
        return Response(PlanSerializer(plan).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        plan = self.get_object()
        data = PlanSerializer(plan, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = {key: value for key, value in data.validated_data.items() if key != "name"}
        if "name" in data.validated_data and data.validated_data["name"] != plan.name:
            raise serializers.ValidationError({"name": ["A plan keeps its name; create a new plan instead."]})
        plan = plans.plan_update(plan=plan, actor=request.user, **changes)
        return Response(PlanSerializer(plan).data)


router = SimpleRouter(trailing_slash=False)
router.register("plans", PlanViewSet, basename="plan")
urlpatterns = router.urls
