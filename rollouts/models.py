import secrets
import time

from django.conf import settings
from django.db import models
from django.db.models import Q

from devices.models import Device, HardwareVariant
from rollouts.choices import (
    DeploymentState,
    EvaluationSource,
    IncidentSeverity,
    IncidentStatus,
    RolloutStatus,
)


class Release(models.Model):
    """A version of the device software, with its artifact and the stable release it rolls back to."""

    version = models.CharField(max_length=50, unique=True)
    artifact = models.FileField(upload_to="artifacts/", blank=True)
    artifact_url = models.URLField(max_length=500, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    signature = models.TextField(blank=True)
    compatible_variants = models.ManyToManyField(
        HardwareVariant,
        blank=True,
        related_name="releases",
        help_text="Leave empty for a release that runs on every variant.",
    )
    notes = models.TextField(blank=True)
    is_stable = models.BooleanField(default=False, help_text="Known good; a target for rollbacks.")
    previous_release = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Where devices return when a rollout of this one is rolled back, until a rollout of "
        "another release completes: from then on they return to that (their variant's current) release.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.version


class RolloutPlan(models.Model):
    """Ordered stages and SLO gate settings that rollouts follow (frozen into each rollout)."""

    name = models.CharField(max_length=50, unique=True)
    description = models.TextField(blank=True)
    # [{"ring": "pilot", "bake_minutes": 2, "auto_advance": true, "cohort": null}, ...]
    stages = models.JSONField()
    # Thresholds and evaluation settings; see rollouts.gates.GateConfig for the keys.
    gate_config = models.JSONField(default=dict, blank=True)
    activation_window_start = models.TimeField(
        null=True, blank=True, help_text="Devices activate only inside this daily window (UTC)."
    )
    activation_window_end = models.TimeField(null=True, blank=True)
    # {"per_minute": 50, "growth": 2.0}: how many of a stage's devices are told to install each minute
    # (growth 1 keeps the rate fixed; above 1 it grows each minute). Empty: the whole stage at once.
    waves = models.JSONField(default=dict, blank=True)
    # {"count": 2, "backoff_seconds": 60}: how often a failed deployment is tried again, and the
    # wait before the first retry (doubling after each one). Empty: a failure is final.
    retries = models.JSONField(default=dict, blank=True)
    # [{"region": "eu", "time_zone": "Europe/Berlin", "start": "02:00", "end": "05:00",
    #   "weekdays": ["mon", "tue"]}, ...]: when devices of a site or region may activate, in its own zone.
    maintenance_windows = models.JSONField(default=list, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def new_rollout_id() -> str:
    return f"rollout_{int(time.time())}_{secrets.token_hex(3)}"


class Rollout(models.Model):
    """A release going through a plan, ring by ring, with the plan's settings frozen at creation."""

    rollout_id = models.CharField(max_length=50, unique=True, default=new_rollout_id, editable=False)
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="rollouts")
    plan = models.ForeignKey(RolloutPlan, on_delete=models.PROTECT, related_name="rollouts")
    status = models.CharField(max_length=20, choices=RolloutStatus, default=RolloutStatus.CREATED)
    current_ring = models.CharField(max_length=20, null=True, blank=True)
    stages = models.JSONField(editable=False)
    gate_config = models.JSONField(editable=False)
    activation_window_start = models.TimeField(null=True, blank=True, editable=False)
    activation_window_end = models.TimeField(null=True, blank=True, editable=False)
    waves = models.JSONField(default=dict, editable=False)
    retries = models.JSONField(default=dict, editable=False)
    maintenance_windows = models.JSONField(default=list, editable=False)
    # Consecutive non-critical failed evaluations; the autopilot pauses when it reaches the plan's limit.
    failing_streak = models.PositiveSmallIntegerField(default=0, editable=False)
    stage_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the current stage reached its installed share: its bake runs from here.
    bake_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"])]
        permissions = [
            ("start_rollout", "Can start a rollout"),
            ("promote_rollout", "Can promote a rollout"),
            ("pause_rollout", "Can pause a rollout"),
            ("resume_rollout", "Can resume a rollout"),
            ("rollback_rollout", "Can roll back a rollout"),
            ("override_gates", "Can promote or resume a rollout against the gates, with a reason"),
        ]

    def __str__(self) -> str:
        return self.rollout_id

    @property
    def state(self) -> str:
        """The state of the REST contract: the ring's name while active, else the status."""
        if self.status == RolloutStatus.ACTIVE and self.current_ring:
            return self.current_ring
        return self.status

    @property
    def ring_names(self) -> list[str]:
        return [stage["ring"] for stage in self.stages]

    def stage(self, ring: str) -> dict:
        return next(stage for stage in self.stages if stage["ring"] == ring)

    def next_ring(self) -> str | None:
        rings = self.ring_names
        index = rings.index(self.current_ring) if self.current_ring in rings else -1
        return rings[index + 1] if index + 1 < len(rings) else None


# The deployment states the autopilot's sweeps look for (rollouts.autopilot).
_SWEPT_STATES = (DeploymentState.DOWNLOADING, DeploymentState.VERIFIED, DeploymentState.ROLLING_BACK)


class DeviceDeployment(models.Model):
    """One device taking part in one rollout, with the time of each step it reported."""

    # No index of its own: the (rollout, device) constraint's index serves lookups by rollout, and
    # each index is one more entry to write per row when a stage deploys or a rollout rolls back.
    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="deployments", db_index=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="deployments")
    ring = models.CharField(max_length=20, help_text="The stage of the rollout that targeted the device.")
    state = models.CharField(max_length=20, choices=DeploymentState, default=DeploymentState.PENDING)
    from_version = models.CharField(max_length=50, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the device may start installing: set when its wave is released, and pushed back after
    # a failure that the plan retries. Null while the deployment waits for its wave.
    released_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    diagnostics = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    state_changed_at = models.DateTimeField(auto_now_add=True)
    downloading_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    rolling_back_at = models.DateTimeField(null=True, blank=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rollout", "device__device_id"]
        constraints = [models.UniqueConstraint(fields=["rollout", "device"], name="unique_rollout_device")]
        indexes = [
            # The sweeps read the steps that can get stuck by age (stuck downloads and activations,
            # slow rollbacks). Only rows in those steps are indexed: a stage deploy's pending rows
            # and a rollback's cancelled ones, most rows of both, write no entry here.
            models.Index(
                fields=["state", "state_changed_at"],
                name="deployment_step_age_idx",
                condition=Q(state__in=_SWEPT_STATES),
            ),
            # A stage's counts by state and its activated devices past the grace (rollouts.selectors).
            models.Index(fields=["rollout", "ring", "state", "activated_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.device} in {self.rollout}: {self.state}"


class Evaluation(models.Model):
    """One judgement of a rollout's current ring against its gates, kept to explain decisions."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="evaluations")
    ring = models.CharField(max_length=20)
    action = models.CharField(max_length=20)
    reason = models.TextField()
    # The per-gate detail and the health it was computed from (000 §5.2).
    detail = models.JSONField()
    source = models.CharField(max_length=20, choices=EvaluationSource, default=EvaluationSource.REQUEST)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["rollout", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.rollout} {self.ring}: {self.action}"


class Incident(models.Model):
    """A problem in the field; an open Sev1 linked to a release pauses that release's rollouts."""

    severity = models.CharField(max_length=10, choices=IncidentSeverity)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    release = models.ForeignKey(
        Release, on_delete=models.PROTECT, null=True, blank=True, related_name="incidents"
    )
    status = models.CharField(max_length=10, choices=IncidentStatus, default=IncidentStatus.OPEN)
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    opened_at = models.DateTimeField(auto_now_add=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["release", "status", "severity"])]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"
