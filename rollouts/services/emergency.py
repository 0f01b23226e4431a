"""The emergency stop (001): one fleet-wide switch that pauses every active rollout and refuses
starts, promotions and resumes until it is lifted."""

from django.db import transaction
from django.utils import timezone

from rollouts.choices import RolloutStatus
from rollouts.models import Rollout
from rollouts.services import lifecycle
from saferoll.core.alerts import alert_raise
from saferoll.core.audit import actor_label, audit_record
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AlertLevel, FleetState


def emergency_stop_raise(*, actor, reason: str) -> FleetState | None:
    """Turn the stop on and pause every active rollout. None when it was already on."""
    FleetState.load()
    with transaction.atomic():
        # The fleet row's lock serialises raising and lifting; rollouts are locked after it,
        # one by one, by the pause service (never the other way round, so no deadlock).
        state = FleetState.objects.select_for_update().get(pk=1)
        if state.emergency_stop:
            return None
        state.emergency_stop = True
        state.emergency_reason = reason
        state.emergency_raised_by = actor_label(actor)
        state.emergency_raised_at = timezone.now()
        state.save(
            update_fields=["emergency_stop", "emergency_reason", "emergency_raised_by", "emergency_raised_at"]
        )
        audit_record(actor=actor, action="EMERGENCY_STOP", obj=state, reason=reason)
        for rollout in Rollout.objects.filter(status=RolloutStatus.ACTIVE).order_by("pk"):
            try:
                lifecycle.rollout_pause(rollout=rollout, actor=actor, reason=f"Emergency stop: {reason}")
            except ServiceRefused:
                # Someone paused or rolled it back between the query and its lock: it is stopped anyway.
                continue
        alert_raise(
            level=AlertLevel.CRITICAL, kind="EMERGENCY_STOP", title="Emergency stop raised", message=reason
        )
    return state


def emergency_stop_lift(*, actor, reason: str) -> FleetState | None:
    """Turn the stop off. Paused rollouts stay paused until someone resumes them. None when it was off."""
    FleetState.load()
    with transaction.atomic():
        state = FleetState.objects.select_for_update().get(pk=1)
        if not state.emergency_stop:
            return None
        state.emergency_stop = False
        state.save(update_fields=["emergency_stop"])
        audit_record(actor=actor, action="EMERGENCY_STOP_LIFTED", obj=state, reason=reason)
    return state
