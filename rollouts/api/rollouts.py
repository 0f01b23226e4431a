"""Rollouts over REST (000 §5.2): create, list, detail with timeline and blast radius, the
lifecycle commands, and the gate decision.

    POST /api/rollouts                                   {"version", "plan"?}
    GET  /api/rollouts                                   {"rollouts": [...], "count", "next", "previous"}
    GET  /api/rollouts/{rollout_id}
    POST /api/rollouts/{rollout_id}/start|promote|pause|resume|rollback   {"reason"?}
    POST /api/rollouts/{rollout_id}/promote|resume       {"override": true, "reason"} (release managers)
    GET  /api/rollouts/{rollout_id}/should_promote
    GET  /api/rollouts/{rollout_id}/series?minutes=30&ring=   per-minute health of its devices

Views only parse, call a service of rollouts.services and render; refusals come back as 409.
"""

from collections.abc import Callable
from typing import Any

from django.db import models
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from rollouts.choices import TERMINAL_STATUSES
from rollouts.filtersets import RolloutFilterSet
from rollouts.gates import Action, GateConfig
from rollouts.models import Release, Rollout, RolloutPlan
from rollouts.permissions import RolloutPermission, override_refusal
from rollouts.selectors import (
    rollout_bake_clock,
    rollout_deployment_summary,
    rollout_health_series,
    rollout_install_progress,
    wave_progress,
)
from rollouts.services import lifecycle
from saferoll.core.api.fields import NamedObjectField, TimeOfDayField
from saferoll.core.api.pagination import StandardPagination
from saferoll.core.api.schema import ErrorSerializer
from saferoll.core.models import AuditEvent
from telemetry.api.serializers import SeriesPointSerializer

# The `ring` of the series endpoint that charts every ring of the rollout together.
ALL_RINGS = "all"

# --- Shared by the rollout, evaluation and plan APIs ---------------------------------------------


def keyed_pagination(key: str) -> type[StandardPagination]:
    """A paginator whose page lists its items under `key` ({"rollouts": [...], "count", ...})."""

    class KeyedPagination(StandardPagination):
        def get_paginated_response(self, data):
            assert self.page is not None  # paginate_queryset has set it
            return Response(
                {
                    key: data,
                    "count": self.page.paginator.count,
                    "next": self.get_next_link(),
                    "previous": self.get_previous_link(),
                }
            )

        def get_paginated_response_schema(self, schema):
            page = super().get_paginated_response_schema(schema)
            page["properties"][key] = page["properties"].pop("results")
            page["required"] = [key if name == "results" else name for name in page.get("required", [])]
            return page

    KeyedPagination.__name__ = f"{key.title()}Pagination"
    return KeyedPagination


class RolloutRefusedSerializer(ErrorSerializer):
    reason = serializers.CharField(required=False, help_text="Why the gates said no (gates refusal only).")
    evaluation = serializers.JSONField(required=False, help_text="The per-gate detail (gates refusal only).")


# --- Serializers ---------------------------------------------------------------------------------


class RolloutEventSerializer(serializers.ModelSerializer):
    """One entry of a rollout's timeline: an audit event of that rollout."""

    timestamp = serializers.DateTimeField(source="created_at")
    actor = serializers.CharField(source="actor_name")

    class Meta:
        model = AuditEvent
        fields = ["action", "from_ring", "to_ring", "reason", "timestamp", "actor", "evaluation", "changes"]
        read_only_fields = fields


class RolloutListSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="release.version")
    plan = serializers.CharField(source="plan.name")
    state = serializers.CharField(help_text="The ring's name while active, else the status.")

    class Meta:
        model = Rollout
        fields = [
            "rollout_id",
            "version",
            "state",
            "status",
            "current_ring",
            "plan",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class BlastRadiusSerializer(serializers.Serializer):
    exposed = serializers.IntegerField(help_text="Devices that received the release.")
    targeted = serializers.IntegerField(help_text="Devices the rollout deployed to so far.")
    fleet = serializers.IntegerField(help_text="Devices in the fleet.")
    spared = serializers.IntegerField(help_text="Devices of the fleet that did not receive the release.")


class InstallProgressSerializer(serializers.Serializer):
    targeted = serializers.IntegerField(help_text="Deployments of the ring, cancelled ones aside.")
    installed = serializers.IntegerField(help_text="Devices that run the release.")
    unreachable = serializers.IntegerField(help_text="Silent for longer than the plan allows; not counted.")
    incompatible = serializers.IntegerField(help_text="Hardware the release does not support; not counted.")
    share = serializers.FloatField(allow_null=True, help_text="installed / (targeted - unreachable).")
    min_share = serializers.FloatField(help_text="The share the stage needs before it bakes and promotes.")
    met = serializers.BooleanField()


class BakeSerializer(serializers.Serializer):
    started_at = serializers.DateTimeField(
        allow_null=True, help_text="When the installed share was met; null until then."
    )
    minutes = serializers.FloatField()
    remaining_seconds = serializers.IntegerField()


class RolloutDetailSerializer(RolloutListSerializer):
    # The activation window's ends are UTC times of day, without an offset.
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.TimeField: TimeOfDayField,
    }
    created_by = serializers.CharField(source="created_by.get_username", default=None)
    next_ring = serializers.SerializerMethodField()
    blast_radius = serializers.SerializerMethodField()
    deployments = serializers.SerializerMethodField()
    wave_progress = serializers.SerializerMethodField()
    events = RolloutEventSerializer(many=True, read_only=True)
    install = serializers.SerializerMethodField()
    bake = serializers.SerializerMethodField()

    class Meta(RolloutListSerializer.Meta):
        fields = [
            *RolloutListSerializer.Meta.fields,
            "created_by",
            "next_ring",
            "stage_started_at",
            "bake_started_at",
            "install",
            "bake",
            "failing_streak",
            "stages",
            "gate_config",
            "activation_window_start",
            "activation_window_end",
            "waves",
            "retries",
            "blast_radius",
            "deployments",
            "wave_progress",
            "events",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_next_ring(self, rollout: Rollout) -> str | None:
        """The ring a promote (or, before the start, the start) would deploy; None once finished."""
        if rollout.status in TERMINAL_STATUSES:
            return None
        return rollout.next_ring() if rollout.current_ring else rollout.ring_names[0]

    @extend_schema_field(BlastRadiusSerializer)
    def to_representation(self, instance: Rollout) -> dict[str, Any]:
        # Read once per rollout: the blast radius and the deployments are two views of it.
        self._summary = rollout_deployment_summary(instance)
        return super().to_representation(instance)

    @extend_schema_field(InstallProgressSerializer(allow_null=True))
    def get_install(self, rollout: Rollout) -> dict[str, Any] | None:
        """How much of the current ring runs the release; null when no ring is deployed."""
        if not _judged(rollout):
            return None
        assert rollout.current_ring is not None  # _judged says so
        return rollout_install_progress(rollout, rollout.current_ring).to_dict()

    @extend_schema_field(BakeSerializer(allow_null=True))
    def get_bake(self, rollout: Rollout) -> dict[str, Any] | None:
        """The current ring's bake; null when no ring is deployed."""
        if not _judged(rollout):
            return None
        assert rollout.current_ring is not None
        return rollout_bake_clock(rollout, rollout.current_ring).to_dict()

    def get_blast_radius(self, rollout: Rollout) -> dict[str, int]:
        return self._summary.blast_radius()

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "by_state": {"type": "object", "additionalProperties": {"type": "integer"}},
                "by_ring": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
            },
        }
    )
    def get_deployments(self, rollout: Rollout) -> dict[str, Any]:
        summary = self._summary
        return {"by_state": summary.by_state, "by_ring": summary.by_ring}

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {
                "ring": {"type": "string"},
                "wave": {"type": "integer", "nullable": True},
                "released": {"type": "integer"},
                "targeted": {"type": "integer"},
                "sentence": {"type": "string"},
            },
        }
    )
    def get_wave_progress(self, rollout: Rollout) -> dict[str, Any] | None:
        """The current ring's waves released so far; None for a plan without waves."""
        return wave_progress(rollout, self._summary)


def _judged(rollout: Rollout) -> bool:
    """Whether the rollout has a ring the gates judge (active or paused)."""
    return rollout.status not in TERMINAL_STATUSES and rollout.current_ring is not None


class RolloutCreateSerializer(serializers.Serializer):
    version = NamedObjectField(
        slug_field="version",
        queryset=Release.objects.all(),
        error_messages={"does_not_exist": "There is no release {value}."},
    )
    plan = NamedObjectField(
        slug_field="name",
        queryset=RolloutPlan.objects.all(),
        required=False,
        allow_null=True,
        help_text="A plan's name; the default plan when left out.",
        error_messages={"does_not_exist": "There is no plan named {value}."},
    )


class RolloutCommandSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class RolloutOverridableCommandSerializer(RolloutCommandSerializer):
    override = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Release managers only, with a reason: go past a WAIT or PAUSE verdict (install share, "
            "bake, failing gates), never a ROLLBACK one. Recorded as an OVERRIDE event."
        ),
    )


class RolloutSeriesQuerySerializer(serializers.Serializer):
    minutes = serializers.IntegerField(min_value=10, max_value=60, default=30)
    ring = serializers.CharField(
        required=False,
        max_length=20,
        help_text=f"A ring of the rollout; the current ring when left out, every ring with '{ALL_RINGS}'.",
    )


class CustomKpiSerializer(serializers.Serializer):
    metric = serializers.CharField()
    # A declared field named like a Field attribute does not replace it (DRF's metaclass takes it
    # out of the class); the stubs cannot say so.
    label = serializers.CharField()  # type: ignore[assignment]
    operator = serializers.CharField()
    threshold = serializers.FloatField()
    critical_threshold = serializers.FloatField(allow_null=True)


class RolloutSeriesSerializer(serializers.Serializer):
    rollout_id = serializers.CharField()
    ring = serializers.CharField(allow_null=True, help_text=f"The ring charted, or '{ALL_RINGS}'.")
    version = serializers.CharField()
    minutes = serializers.IntegerField()
    thresholds = serializers.DictField(child=serializers.FloatField(), help_text="Goal and critical lines.")
    kpis = CustomKpiSerializer(
        many=True, help_text="The custom KPIs the plan gates on; each point's `metrics` has their means."
    )
    points = SeriesPointSerializer(many=True)


class RolloutDecisionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=[action.value for action in Action])
    reason = serializers.CharField()
    evaluation = serializers.JSONField(
        help_text=(
            "ring, overall, gates (value, threshold, operator, passed; baseline: the previous release's "
            "figure, excused: true for an outside event; a '<figure>_vs_baseline' gate adds ring, baseline, "
            "ratio, ratio_max, p_value, alpha and worse; a custom KPI gate, named 'kpi:<metric>', adds "
            "custom, metric, label, compare_baseline and judged: false when nobody reported it), score "
            "(the health score: value 0–100 or null, weights and parts per gate; it explains, the gates "
            "decide), health (with metrics, the custom KPIs' means), sample (devices, min_devices, checks, "
            "min_checks, enough), baseline (the previous release over the window, with recent and "
            "ring_recent over the compared last minutes), install (targeted, "
            "installed, unreachable, incompatible, share, min_share, met) and bake (started_at, minutes, "
            "remaining_seconds)"
        )
    )


# --- Views ---------------------------------------------------------------------------------------

_COMMAND_RESPONSES = {
    200: RolloutDetailSerializer,
    403: OpenApiResponse(ErrorSerializer, description="The role may not do this."),
    404: OpenApiResponse(ErrorSerializer, description="No such rollout."),
    409: OpenApiResponse(RolloutRefusedSerializer, description="Refused in the rollout's current state."),
}


def _command_schema(summary: str, request=RolloutCommandSerializer):
    responses = dict(_COMMAND_RESPONSES)
    if request is RolloutOverridableCommandSerializer:
        responses[400] = OpenApiResponse(ErrorSerializer, description="An override without a reason.")
    return extend_schema(summary=summary, request=request, responses=responses)


@extend_schema_view(
    list=extend_schema(summary="List rollouts (newest first)"),
    retrieve=extend_schema(
        summary="A rollout with its timeline, blast radius and deployments",
        responses={200: RolloutDetailSerializer, 404: OpenApiResponse(ErrorSerializer)},
    ),
)
class RolloutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Rollout.objects.select_related("release", "plan", "created_by").order_by("-created_at", "-id")
    lookup_field = "rollout_id"
    permission_classes = [RolloutPermission]
    filterset_class = RolloutFilterSet
    pagination_class = keyed_pagination("rollouts")
    ordering_fields = ["created_at", "updated_at", "started_at", "finished_at"]

    def get_serializer_class(self):
        return RolloutListSerializer if self.action == "list" else RolloutDetailSerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "retrieve":
            # The timeline in the order things happened; (rollout, created_at) is indexed.
            events = AuditEvent.objects.order_by("created_at", "id")
            return queryset.prefetch_related(Prefetch("events", queryset=events))
        return queryset

    def get_object(self) -> Rollout:
        rollout_id = self.kwargs[self.lookup_field]
        rollout = self.get_queryset().filter(rollout_id=rollout_id).first()
        if rollout is None:
            raise NotFound(f"Rollout {rollout_id} not found.")
        self.check_object_permissions(self.request, rollout)
        return rollout

    def _render(self, rollout: Rollout, code: int = status.HTTP_200_OK) -> Response:
        events = AuditEvent.objects.order_by("created_at", "id")
        fresh = (
            super().get_queryset().prefetch_related(Prefetch("events", queryset=events)).get(pk=rollout.pk)
        )
        return Response(
            RolloutDetailSerializer(fresh, context=self.get_serializer_context()).data, status=code
        )

    @extend_schema(
        summary="Create a rollout of a release",
        request=RolloutCreateSerializer,
        responses={
            201: RolloutDetailSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Unknown version or plan, or a broken plan."),
            403: OpenApiResponse(ErrorSerializer),
        },
    )
    def create(self, request, *args, **kwargs):
        data = RolloutCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rollout = lifecycle.rollout_create(
            release=data.validated_data["version"], plan=data.validated_data.get("plan"), actor=request.user
        )
        return self._render(rollout, status.HTTP_201_CREATED)

    def _command(self, request, service: Callable[..., Rollout], **extra) -> Response:
        rollout = self.get_object()
        data = RolloutCommandSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rollout = service(rollout=rollout, actor=request.user, reason=data.validated_data["reason"], **extra)
        return self._render(rollout)

    def _overridable_command(self, request, service: Callable[..., Rollout]) -> Response:
        """Promote or resume, past the gates' verdict when asked to by a release manager."""
        rollout = self.get_object()
        data = RolloutOverridableCommandSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        override = data.validated_data["override"]
        if override:
            refusal = override_refusal(request.user)
            if refusal:
                raise PermissionDenied(refusal)
        rollout = service(
            rollout=rollout, actor=request.user, reason=data.validated_data["reason"], override=override
        )
        return self._render(rollout)

    @_command_schema("Start: deploy the first ring")
    @action(detail=True, methods=["post"])
    def start(self, request, rollout_id=None):
        return self._command(request, lifecycle.rollout_start)

    @_command_schema(
        "Promote to the next ring when the gates say PROMOTE (the last ring completes); "
        "a release manager may override a WAIT or PAUSE verdict with a reason",
        request=RolloutOverridableCommandSerializer,
    )
    @action(detail=True, methods=["post"])
    def promote(self, request, rollout_id=None):
        return self._overridable_command(request, lifecycle.rollout_promote)

    @_command_schema("Pause an active rollout")
    @action(detail=True, methods=["post"])
    def pause(self, request, rollout_id=None):
        return self._command(request, lifecycle.rollout_pause)

    @_command_schema(
        "Resume a paused rollout in its ring, after a fresh evaluation; "
        "a release manager may override a PAUSE verdict with a reason",
        request=RolloutOverridableCommandSerializer,
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, rollout_id=None):
        return self._overridable_command(request, lifecycle.rollout_resume)

    @_command_schema("Roll back: devices return to the previous stable release")
    @action(detail=True, methods=["post"])
    def rollback(self, request, rollout_id=None):
        return self._command(request, lifecycle.rollout_rollback)

    @extend_schema(
        summary="Judge the current ring against the gates (nothing is stored)",
        responses={
            200: RolloutDecisionSerializer,
            404: OpenApiResponse(ErrorSerializer),
            409: OpenApiResponse(ErrorSerializer, description="No ring is deployed."),
        },
    )
    @action(detail=True, methods=["get"])
    def should_promote(self, request, rollout_id=None):
        rollout = self.get_object()
        decision = lifecycle.rollout_evaluate(rollout=rollout)
        return Response(decision.to_dict())

    @extend_schema(
        summary="Per-minute health of the rollout's devices on the release, for the chart",
        parameters=[RolloutSeriesQuerySerializer],
        responses={
            200: RolloutSeriesSerializer,
            400: OpenApiResponse(ErrorSerializer),
            404: OpenApiResponse(ErrorSerializer),
        },
    )
    @action(detail=True, methods=["get"])
    def series(self, request, rollout_id=None):
        rollout = self.get_object()
        query = RolloutSeriesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        ring = query.validated_data.get("ring") or rollout.current_ring
        if ring not in (None, ALL_RINGS, *rollout.ring_names):
            raise NotFound(f"Rollout {rollout.rollout_id} has no ring named {ring}.")
        minutes = query.validated_data["minutes"]
        # `ring` is None only before the start, when the rollout has no deployments to chart.
        points = rollout_health_series(rollout, ring=None if ring == ALL_RINGS else ring, minutes=minutes)
        config = GateConfig.from_dict(rollout.gate_config)
        body = {
            "rollout_id": rollout.rollout_id,
            "ring": ring,
            "version": rollout.release.version,
            "minutes": minutes,
            "thresholds": {
                "crash_free_min": config.crash_free_min,
                "crash_free_critical": config.crash_free_critical,
                "boot_success_min": config.boot_success_min,
                "boot_success_critical": config.boot_success_critical,
                "latency_max_ms": config.latency_max_ms,
                "latency_critical_ms": config.latency_critical_ms,
            },
            "kpis": [definition.goal() for definition in config.custom_gates],
            "points": [point.to_dict() for point in points],
        }
        return Response(RolloutSeriesSerializer(body).data)


router = SimpleRouter(trailing_slash=False)
router.register("rollouts", RolloutViewSet, basename="rollout")
urlpatterns = router.urls
