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
