"""The one place where audit events are written."""

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.db import models

from saferoll.core.models import AuditEvent
from saferoll.core.signals import audit_recorded

# Who did something: a person, or None for SafeRoll itself, or a device's label ("device:tv-0001").
Actor = User | str | None


def actor_label(actor: Actor) -> str:
    if actor is None:
        return AuditEvent.SYSTEM_ACTOR
    if isinstance(actor, str):
        return actor
    return actor.get_username()


def actor_user(actor: Actor) -> User | None:
    """The person behind an actor, for a user link; None for SafeRoll itself and for devices."""
    return actor if isinstance(actor, AbstractBaseUser) else None


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: models.Model,
    reason: str = "",
    changes: dict | None = None,
    evaluation: dict | None = None,
    rollout=None,
    from_ring: str | None = None,
    to_ring: str | None = None,
) -> AuditEvent:
    """Append one audit event. Call it inside the transaction that makes the change it records."""
    event = AuditEvent.objects.create(
        actor=actor_user(actor),
        actor_name=actor_label(actor),
        action=action,
        object_type=obj._meta.model_name or "",
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        rollout=rollout,
        from_ring=from_ring,
        to_ring=to_ring,
        reason=reason,
        changes=changes,
        evaluation=evaluation,
    )
    audit_recorded.send(sender=AuditEvent, event=event, rollout=rollout)
    return event


def diff_fields(before: dict[str, Any], after: dict[str, Any]) -> dict | None:
    """The before/after pair of the fields that changed, or None when nothing did."""
    changed = {key for key in after if before.get(key) != after.get(key)}
    if not changed:
        return None
    return {
        "before": {key: before.get(key) for key in sorted(changed)},
        "after": {key: after.get(key) for key in sorted(changed)},
    }
