"""What SafeRoll does by itself (SPEC §6): judge active rollouts and act, sweep stuck deployments,
watch the fleet as a whole. Each function is safe to run twice or on two workers at once."""

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from devices.choices import DeviceStatus
from devices.models import Device
from rollouts.choices import (
    DeploymentState,
    EvaluationSource,
    IncidentSeverity,
    IncidentStatus,
    RolloutStatus,
)
from rollouts.gates import Action, GateConfig
from rollouts.models import DeviceDeployment, Evaluation, Incident, Rollout
from rollouts.policy import Step, autopilot_move
from rollouts.selectors import rollout_bake_clock
from rollouts.services import lifecycle
from rollouts.services.deployments import deployments_fail
from rollouts.services.emergency import emergency_stop_raise
from rollouts.signals import autopilot_round_began, evaluation_stored
from saferoll.core.alerts import alert_raise
from saferoll.core.audit import audit_record
from saferoll.core.models import AlertLevel, FleetState
from telemetry.selectors import critically_unhealthy_devices

logger = logging.getLogger(__name__)


# Paused rollouts are judged too: a pause stops the spread, but devices already on a release whose
# ring turns critical must still go back (an emergency stop pauses the very rollout that caused it).
JUDGED_STATUSES = (RolloutStatus.ACTIVE, RolloutStatus.PAUSED)


def autopilot_evaluate(*, rollout_id: int, now: dt.datetime | None = None) -> Evaluation | None:
    """Judge one active or paused rollout and act on the decision. Returns the stored evaluation,
    or None when nothing was stored (not judged: finished, or another worker is judging it right
    now; or paused and not critical, which is left to people and not stored every round)."""
    now = now or timezone.now()
    with transaction.atomic():
        # skip_locked: a second worker that finds the row locked leaves the round to the first,
        # so two beats at the same moment make one judgement, one transition and one event.
        rollout = (
            Rollout.objects.select_for_update(skip_locked=True)
            .select_related("release")
            .filter(pk=rollout_id, status__in=JUDGED_STATUSES)
            .first()
        )
        if rollout is None or _judged_this_period(rollout, now):
            return None
        active = rollout.status == RolloutStatus.ACTIVE
        sev1 = _open_sev1(rollout) if active else None
        if sev1 is not None:
            reason = f"Sev1 incident #{sev1.pk} “{sev1.title}” is open on release {rollout.release.version}."
            lifecycle.rollout_pause(rollout=rollout, actor=None, reason=reason)
            _alert_automatic(rollout, "AUTO_PAUSE", reason)
            return None
        # Parsed once for the round: the judgement and the action stand on the same settings.
        config = GateConfig.from_dict(rollout.gate_config)
        decision = lifecycle.rollout_evaluate(rollout=rollout, now=now, config=config)
        if not active and decision.action != Action.ROLLBACK:
            return None
        evaluation = lifecycle.evaluation_store(
            rollout=rollout, decision=decision, source=EvaluationSource.AUTOPILOT, now=now
        )
        if not _act(rollout, evaluation, config, now):
            # A judgement that changes the rollout is announced with that change (its audit event
            # carries the evaluation): one live message per change, not one per layer.
            evaluation_stored.send(sender=Evaluation, evaluation=evaluation)
    return evaluation


def _judged_this_period(rollout: Rollout, now: dt.datetime) -> bool:
    """A duplicated beat (two schedulers, a retried task) must not count a failure twice."""
    half_period = dt.timedelta(seconds=settings.SAFEROLL_AUTOPILOT_PERIOD_SECONDS / 2)
    return Evaluation.objects.filter(
        rollout=rollout, source=EvaluationSource.AUTOPILOT, created_at__gt=now - half_period
    ).exists()


def _open_sev1(rollout: Rollout) -> Incident | None:
    return (
        Incident.objects.filter(
            release_id=rollout.release_id, severity=IncidentSeverity.SEV1, status=IncidentStatus.OPEN
        )
        .order_by("opened_at")
        .first()
    )


def _act(rollout: Rollout, evaluation: Evaluation, config: GateConfig, now: dt.datetime) -> bool:
    """Act on the stored judgement; each transition carries it, so the timeline shows why.
    Whether the rollout changed state."""
    action = Action(evaluation.action)
    may_advance = action == Action.PROMOTE and _may_advance(rollout, now)
    move = autopilot_move(action, streak=rollout.failing_streak, config=config, may_advance=may_advance)
    if move.streak != rollout.failing_streak:
        Rollout.objects.filter(pk=rollout.pk).update(failing_streak=move.streak)
        rollout.failing_streak = move.streak
    if move.step == Step.ROLLBACK:
        lifecycle.rollout_rollback(
            rollout=rollout, actor=None, reason=evaluation.reason, evaluation=evaluation
        )
        _alert_automatic(rollout, "AUTO_ROLLBACK", evaluation.reason)
        return True
    if move.step == Step.PAUSE:
        reason = f"{evaluation.reason} (failing {move.streak} evaluations in a row)"
        lifecycle.rollout_pause(rollout=rollout, actor=None, reason=reason, evaluation=evaluation)
        _alert_automatic(rollout, "AUTO_PAUSE", reason)
        return True
    if move.step == Step.PROMOTE:
        lifecycle.rollout_promote(rollout=rollout, actor=None, evaluation=evaluation)
        return True
    return False


def _may_advance(rollout: Rollout, now: dt.datetime) -> bool:
    """After the stage's bake, which runs from when its installed share was met (the rule a
    person's promote is held to): the plan's auto-advance, or completion after the last ring."""
    if rollout.current_ring is None:
        return False
    stage = rollout.stage(rollout.current_ring)
    baked = rollout_bake_clock(rollout, rollout.current_ring, now=now).done
    is_last = rollout.next_ring() is None
    return baked and (is_last or stage.get("auto_advance", False))


def _alert_automatic(rollout: Rollout, action: str, reason: str) -> None:
    level = AlertLevel.CRITICAL if action == "AUTO_ROLLBACK" else AlertLevel.WARNING
    verb = "rolled back" if action == "AUTO_ROLLBACK" else "paused"
    alert_raise(
        level=level,
        kind=action,
        title=f"SafeRoll {verb} {rollout.release.version} ({rollout.rollout_id})",
        message=reason,
        rollout=rollout,
    )


def autopilot_round(*, now: dt.datetime | None = None) -> list[int]:
    """The ids of the rollouts to judge this round; records the autopilot's heartbeat."""
    now = now or timezone.now()
    FleetState.load()
    FleetState.objects.filter(pk=1).update(autopilot_last_run=now)
    # Once a round, not per check: this is the throttle on live health updates (000 §6.6).
    autopilot_round_began.send(sender=FleetState)
    return list(Rollout.objects.filter(status__in=JUDGED_STATUSES).values_list("pk", flat=True))


def deployments_fail_stuck(*, now: dt.datetime | None = None) -> int:
    """A download or activation that has not moved for the step timeout has failed (001 "update
    stuck"): it is retried when the rollout's plan has retries left, else failed for good. The
    number of deployments that failed either way."""
    now = now or timezone.now()
    timeout = settings.SAFEROLL_DEPLOYMENT_STEP_TIMEOUT_SECONDS
    failed = retried = 0
    for state in (DeploymentState.DOWNLOADING, DeploymentState.VERIFIED):
        # Each UPDATE filters again: a device report that moved the row on meanwhile wins over the sweep.
        final, again = deployments_fail(
            DeviceDeployment.objects.filter(
                state=state, state_changed_at__lt=now - dt.timedelta(seconds=timeout)
            ),
            error=f"Stuck in {state} for more than {timeout // 60} minutes.",
            now=now,
        )
        failed += final
        retried += again
    if failed or retried:
        logger.warning("stuck deployments: %d failed, %d to be retried", failed, retried)
    return failed + retried


def deployments_flag_slow_rollbacks(*, now: dt.datetime | None = None) -> int:
    """A device not back on the stable release within the rollback target is flagged (002 D11–12)."""
    now = now or timezone.now()
    target = dt.timedelta(seconds=settings.SAFEROLL_ROLLBACK_TARGET_SECONDS)
    late = DeviceDeployment.objects.filter(
        state=DeploymentState.ROLLING_BACK, rolling_back_at__lt=now - target
    ).select_related("device", "rollout")
    flagged = 0
    for deployment in late:
        reason = (
            f"Not back on the stable release {int(target.total_seconds() // 60)} minutes after "
            f"the rollback of {deployment.rollout.rollout_id}."
        )
        with transaction.atomic():
            # The row count is the compare-and-swap: only the first sweep flags and alerts.
            changed = (
                Device.objects.filter(pk=deployment.device_id)
                .exclude(status=DeviceStatus.INVESTIGATE)
                .update(status=DeviceStatus.INVESTIGATE, status_reason=reason)
            )
            if not changed:
                continue
            audit_record(actor=None, action="DEVICE_FLAGGED", obj=deployment.device, reason=reason)
            alert_raise(
                level=AlertLevel.WARNING,
                kind="DEVICE_FLAGGED",
                title=f"{deployment.device.device_id} flagged for investigation",
                message=reason,
                rollout=deployment.rollout,
                device=deployment.device,
            )
            flagged += 1
    return flagged


def fleet_check_health(*, now: dt.datetime | None = None) -> bool:
    """Raise the emergency stop when too much of the reporting fleet is critically unhealthy.
    Returns whether this call raised it."""
    now = now or timezone.now()
    reporting, unhealthy = critically_unhealthy_devices(window_minutes=GateConfig().window_minutes, now=now)
    if reporting < settings.SAFEROLL_FLEET_MIN_DEVICES:
        return False
    share = unhealthy / reporting
    if share <= settings.SAFEROLL_FLEET_UNHEALTHY_SHARE:
        return False
    if FleetState.load().emergency_stop:
        return False
    reason = (
        f"{unhealthy} of {reporting} reporting devices ({share:.0%}) are critically unhealthy, "
        f"above the {settings.SAFEROLL_FLEET_UNHEALTHY_SHARE:.0%} fleet-wide limit."
    )
    return emergency_stop_raise(actor=None, reason=reason) is not None
