from django.conf import settings
from django.db import models


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit events are append-only.")

    def delete(self):
        raise AppendOnlyError("Audit events are append-only.")


class AuditEvent(models.Model):
    """An append-only record of one action by a person, a device or SafeRoll itself."""

    SYSTEM_ACTOR = "saferoll"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    # Kept apart from the user link, so the record still names the actor after the user is gone.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=40, db_index=True)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    # Set for rollout actions: the rollout's event timeline is this table filtered by rollout.
    rollout = models.ForeignKey(
        "rollouts.Rollout", on_delete=models.PROTECT, null=True, blank=True, related_name="events"
    )
    from_ring = models.CharField(max_length=20, null=True, blank=True)
    to_ring = models.CharField(max_length=20, null=True, blank=True)
    reason = models.TextField(blank=True)
    changes = models.JSONField(null=True, blank=True, help_text="Before and after values of what changed.")
    evaluation = models.JSONField(null=True, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["rollout", "created_at"]),
            models.Index(fields=["object_type", "object_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.object_type} {self.object_repr}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events are append-only.")


class FleetState(models.Model):
    """The fleet-wide switches: one row, read by every rollout action (emergency stop, autopilot clock)."""

    emergency_stop = models.BooleanField(default=False)
    emergency_reason = models.TextField(blank=True)
    emergency_raised_by = models.CharField(max_length=150, blank=True)
    emergency_raised_at = models.DateTimeField(null=True, blank=True)
    # When the autopilot last finished a round of evaluations; a stale value means a dead worker or beat.
    autopilot_last_run = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("emergency_stop", "Can raise and lift the emergency stop")]

    def __str__(self) -> str:
        return "Emergency stop" if self.emergency_stop else "Fleet running"

    @classmethod
    def load(cls) -> "FleetState":
        state, _ = cls.objects.get_or_create(pk=1)
        return state


class AlertLevel(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class Alert(models.Model):
    """Something an operator must look at: an automatic rollback or pause, a device that did not recover."""

    level = models.CharField(max_length=10, choices=AlertLevel, default=AlertLevel.WARNING)
    kind = models.CharField(max_length=40, db_index=True)
    title = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    rollout = models.ForeignKey(
        "rollouts.Rollout", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"[{self.level}] {self.title}"
