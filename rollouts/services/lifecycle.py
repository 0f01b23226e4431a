"""A rollout's life: creation, the transitions of SPEC §3, and the judgements they stand on.

Every transition runs in one transaction that locks the rollout row, checks the move against the
state it finds there, writes the new state with `update_fields` and appends exactly one audit event.
A refused attempt is audited too (`PROMOTE_REFUSED`, `AUTO_ROLLBACK_REFUSED`, ...), in a transaction
of its own once the refused one has rolled back, so both sides of a race show in the log.

`actor` is a person, or None for SafeRoll itself: then PROMOTE, PAUSE and ROLLBACK are recorded as
AUTO_PROMOTE, AUTO_PAUSE and AUTO_ROLLBACK (`automatic=` says so explicitly).
"""

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from rollouts.choices import (
    TERMINAL_STATUSES,
    EvaluationSource,
    RolloutAction,
    RolloutStatus,
)
from rollouts.fleet_release import already_running_refusal, rollback_versions
from rollouts.gates import Action, Decision, GateConfig, evaluate
from rollouts.models import DeviceDeployment, Evaluation, Release, Rollout, RolloutPlan
from rollouts.selectors import stage_health
from rollouts.services.deployments import deploy_stage, deployed_sentence, deployments_roll_back
from rollouts.services.plans import default_plan, plan_clean_gate_config, plan_clean_stages
from rollouts.services.releases import release_completed, release_completion_rolled_back
from saferoll.core.audit import Actor, actor_label, actor_user, audit_record
from saferoll.core.errors import ServiceRefused, bad_input
from saferoll.core.models import FleetState


class GatesRefused(ServiceRefused):
    """A promote or resume that the SLO gates do not allow; `.decision` is the judgement, which an
    API answer adds to the sentence."""

    def __init__(self, message: str, *, decision: Decision, evaluation: Evaluation | None = None):
        super().__init__(message, reason=decision.reason, evaluation=decision.evaluation)
        self.decision = decision
        # The stored evaluation the judgement came from, when the caller passed one in.
        self.evaluation = evaluation


class EmergencyStopActive(ServiceRefused):
    """Raised when an action would spread a release while the emergency stop is on."""


def emergency_stop_check(action: str) -> None:
    """Refuse `action` (a sentence fragment such as "start a rollout") while the stop is on."""
    state = FleetState.load()
    if state.emergency_stop:
        raise EmergencyStopActive(
            f"Cannot {action}: the emergency stop is on since {state.emergency_raised_at:%Y-%m-%d %H:%M} UTC "
            f"({state.emergency_reason})."
        )


# The transitions, the statuses each may start from, and the verb of their sentences.
START, PROMOTE, PAUSE, RESUME, ROLLBACK = "start", "promote", "pause", "resume", "rollback"
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    START: (RolloutStatus.CREATED,),
    PROMOTE: (RolloutStatus.ACTIVE,),
    PAUSE: (RolloutStatus.ACTIVE,),
    RESUME: (RolloutStatus.PAUSED,),
    # A completed rollout can be taken back too (to the release current before it), with a reason.
    ROLLBACK: (RolloutStatus.CREATED, RolloutStatus.ACTIVE, RolloutStatus.PAUSED, RolloutStatus.COMPLETED),
}
_VERBS = {START: "start", PROMOTE: "promote", PAUSE: "pause", RESUME: "resume", ROLLBACK: "roll back"}
_AUTOMATIC: dict[str, str] = {
    RolloutAction.PROMOTE: RolloutAction.AUTO_PROMOTE,
    RolloutAction.PAUSE: RolloutAction.AUTO_PAUSE,
    RolloutAction.ROLLBACK: RolloutAction.AUTO_ROLLBACK,
}
# What to do instead, by (transition, status the rollout is in).
_HINTS: dict[tuple[str, str], str] = {
    (START, RolloutStatus.ACTIVE): "it has already started",
    (START, RolloutStatus.PAUSED): "it has already started",
    (PROMOTE, RolloutStatus.CREATED): "start it first",
    (PROMOTE, RolloutStatus.PAUSED): "resume it first",
    (PAUSE, RolloutStatus.CREATED): "only an active rollout can be paused; start it first",
    (PAUSE, RolloutStatus.PAUSED): "it is already paused",
    (RESUME, RolloutStatus.CREATED): "only a paused rollout can be resumed; start it instead",
    (RESUME, RolloutStatus.ACTIVE): "only a paused rollout can be resumed",
}
_FINISHED_HINT = "a finished rollout cannot change"
# The fields a transition may write; copied back onto the caller's instance afterwards.
_STATE_FIELDS = (
    "status",
    "current_ring",
    "failing_streak",
    "stage_started_at",
    "bake_started_at",
    "started_at",
    "finished_at",
    "updated_at",
)


def refused_action(action: str) -> str:
    """The audit action of a refused attempt: PROMOTE_REFUSED, AUTO_ROLLBACK_REFUSED, ..."""
    return f"{action}_REFUSED"


def describe_state(rollout: Rollout) -> str:
    """The rollout's state as the end of a sentence: "paused in pilot", "rolled back"."""
    ring = rollout.current_ring
    states: dict[str, str] = {
        RolloutStatus.CREATED: "created and not started yet",
        RolloutStatus.ACTIVE: f"active in {ring}",
        RolloutStatus.PAUSED: f"paused in {ring}",
        RolloutStatus.COMPLETED: "completed",
        RolloutStatus.ROLLED_BACK: "rolled back",
    }
    return states.get(rollout.status, rollout.status)


def transition_refusal(rollout: Rollout, transition: str) -> str | None:
    """Why `transition` (start, promote, pause, resume, rollback) is not allowed in the rollout's
    state, as a sentence, or None when it is. The portal uses it to disable a button and say why."""
    if rollout.status in ALLOWED_FROM[transition]:
        return None
    hint = _FINISHED_HINT if rollout.status in TERMINAL_STATUSES else _HINTS.get((transition, rollout.status))
    sentence = f"Cannot {_VERBS[transition]} {rollout.rollout_id}: it is {describe_state(rollout)}"
    return f"{sentence}; {hint}." if hint else f"{sentence}."


# --- Evaluations ---------------------------------------------------------------------------------


def rollout_evaluate(
    *, rollout: Rollout, now: dt.datetime | None = None, config: GateConfig | None = None
) -> Decision:
    """Judge the rollout's current ring against its frozen gates (`config`, when the caller has
    already parsed them). Stores nothing."""
    if rollout.status not in (RolloutStatus.ACTIVE, RolloutStatus.PAUSED) or not rollout.current_ring:
        raise ServiceRefused(
            f"Cannot evaluate {rollout.rollout_id}: it is {describe_state(rollout)}, so no ring is deployed."
        )
    ring = rollout.current_ring
    now = now or timezone.now()
    config = config or GateConfig.from_dict(rollout.gate_config)
    health, signals = stage_health(rollout, ring, config=config, now=now)
    return evaluate(health, config, signals)


def evaluation_store(
    *, rollout: Rollout, decision: Decision, source: str, now: dt.datetime | None = None
) -> Evaluation:
    """Keep a judgement, so that anyone can later see why a decision was made. A judgement that
    finds the stage's installed share met starts the stage's bake, once, at `now` (the time the
    judgement was made for)."""
    ring = decision.evaluation.get("ring") or rollout.current_ring or ""
    detail = decision.evaluation
    started = _bake_start(rollout, ring, detail, now or timezone.now())
    if started is not None:
        detail = {**detail, "bake": {**detail["bake"], "started_at": started.isoformat()}}
    return Evaluation.objects.create(
        rollout=rollout,
        ring=ring,
        action=decision.action.value,
        reason=decision.reason,
        detail=detail,
        source=source,
    )


def _bake_start(rollout: Rollout, ring: str, detail: dict[str, Any], now: dt.datetime) -> dt.datetime | None:
    """Start the bake of `ring` when the judgement found its installed share met and it has not
    started yet. The update is conditional, so two judgements at once start it once, and only
    while the rollout is still in that ring. Returns the start when this call set it."""
    install = detail.get("install")
    if not install or not install.get("met") or rollout.current_ring != ring:
        return None
    started = Rollout.objects.filter(pk=rollout.pk, current_ring=ring, bake_started_at__isnull=True).update(
        bake_started_at=now
    )
    if not started:
        return None
    rollout.bake_started_at = now
    return now


def evaluation_payload(evaluation: Evaluation) -> dict[str, Any]:
    """What an audit event carries of the evaluation it was based on (000 §6.3)."""
    return {
        **evaluation.detail,
        "action": evaluation.action,
        "reason": evaluation.reason,
        "evaluation_id": evaluation.pk,
    }


def _decision_of(evaluation: Evaluation) -> Decision:
    return Decision(action=Action(evaluation.action), reason=evaluation.reason, evaluation=evaluation.detail)


def _judge(
    *, rollout: Rollout, evaluation: Evaluation | None, now: dt.datetime
) -> tuple[Decision, Evaluation | None]:
    """The judgement a promote or resume stands on: the caller's stored evaluation when it is of
    this rollout's current ring and still inside the gate window, else a fresh one (not stored yet)."""
    config = GateConfig.from_dict(rollout.gate_config)
    if evaluation is not None:
        window = dt.timedelta(minutes=config.window_minutes)
        if (
            evaluation.rollout_id == rollout.pk
            and evaluation.ring == rollout.current_ring
            and evaluation.created_at >= now - window
        ):
            return _decision_of(evaluation), evaluation
    return rollout_evaluate(rollout=rollout, now=now, config=config), None


# --- Creation and transitions --------------------------------------------------------------------


def rollout_create(*, release: Release, plan: RolloutPlan | None = None, actor: Actor) -> Rollout:
    """A new rollout of `release` following `plan` (the default plan when None), with the plan's
    stages, gates and activation window frozen into it. Refused (400) for a broken plan."""
    with transaction.atomic():
        plan = plan or default_plan()
        try:
            stages = plan_clean_stages(plan.stages)
            gate_config = GateConfig.from_dict(plan_clean_gate_config(plan.gate_config)).to_dict()
        except ServiceRefused as broken:
            raise bad_input(broken.message, field="plan") from broken
        _check_worth_rolling_out(release, stages)
        rollout = Rollout.objects.create(
            release=release,
            plan=plan,
            stages=stages,
            gate_config=gate_config,
            activation_window_start=plan.activation_window_start,
            activation_window_end=plan.activation_window_end,
            waves=plan.waves,
            retries=plan.retries,
            maintenance_windows=plan.maintenance_windows,
            created_by=actor_user(actor),
        )
        audit_record(
            actor=actor,
            action=RolloutAction.CREATED,
            obj=rollout,
            rollout=rollout,
            reason=f"Rollout of {release.version} created with the {plan.name} plan.",
            changes={
                "after": {
                    "state": rollout.state,
                    "version": release.version,
                    "plan": plan.name,
                    "rings": rollout.ring_names,
                }
            },
        )
    return rollout


def rollout_start(*, rollout: Rollout, actor: Actor, reason: str = "") -> Rollout:
    """created → the first ring: deploy the first stage."""
    action = RolloutAction.START
    automatic = actor is None
    with _transition(
        rollout,
        START,
        actor=actor,
        action=action,
        reason=reason,
        automatic=automatic,
        spreads="start a rollout",
    ) as locked:
        now = timezone.now()
        ring = locked.ring_names[0]
        _check_worth_rolling_out(locked.release, locked.stages, starting=locked)
        deployed = deploy_stage(rollout=locked, stage=locked.stages[0])
        before = locked.state
        locked.status = RolloutStatus.ACTIVE
        locked.current_ring = ring
        locked.started_at = now
        locked.stage_started_at = now
        locked.failing_streak = 0
        locked.save(
            update_fields=[
                "status",
                "current_ring",
                "started_at",
                "stage_started_at",
                "failing_streak",
                "updated_at",
            ]
        )
        audit_record(
            actor=actor,
            action=action,
            obj=locked,
            rollout=locked,
            to_ring=ring,
            reason=reason or deployed_sentence(locked, deployed),
            changes=_state_change(before, locked, deployments=deployed),
        )
    return rollout


def rollout_promote(
    *,
    rollout: Rollout,
    actor: Actor,
    reason: str = "",
    evaluation: Evaluation | None = None,
    automatic: bool | None = None,
    override: bool = False,
) -> Rollout:
    """The current ring → the next one, only when the gates say PROMOTE; at the last ring the
    rollout completes. `evaluation` is a stored judgement of the current ring to act on (the
    autopilot's); without one the ring is judged afresh and the judgement stored.

    `override` (a person with a reason; whoever calls checks that the person may) promotes on a
    WAIT or PAUSE verdict too, skipping the install share and the bake, and records an OVERRIDE
    event with the judgement it overrode. A ROLLBACK verdict is never overridden."""
    automatic = actor is None if automatic is None else automatic
    _check_override(override, actor=actor, reason=reason)
    action = _automatic_action(RolloutAction.PROMOTE, automatic)
    with _transition(
        rollout,
        PROMOTE,
        actor=actor,
        action=action,
        reason=reason,
        automatic=automatic,
        spreads="promote a rollout",
        override=override,
    ) as locked:
        now = timezone.now()
        decision, record = _judge(rollout=locked, evaluation=evaluation, now=now)
        if override:
            _refuse_rollback_verdict(PROMOTE, decision, record)
        elif decision.action != Action.PROMOTE:
            raise GatesRefused(
                f"Cannot promote: {decision.action.value}", decision=decision, evaluation=record
            )
        record = record or evaluation_store(
            rollout=locked, decision=decision, source=_source(automatic), now=now
        )
        if override:
            _audit_override(locked, actor=actor, transition=PROMOTE, reason=reason, record=record)
        before, from_ring, next_ring = locked.state, locked.current_ring, locked.next_ring()
        deployed = None
        if next_ring is None:
            # Past the last ring there is nowhere to go: the rollout is done (000 §6.3 ring_100 → completed).
            action = RolloutAction.COMPLETED
            locked.status = RolloutStatus.COMPLETED
            locked.finished_at = now
            locked.save(update_fields=["status", "finished_at", "updated_at"])
            reason = reason or f"{decision.reason} {from_ring} was the last ring: the rollout is complete."
        else:
            deployed = deploy_stage(rollout=locked, stage=locked.stage(next_ring))
            locked.current_ring = next_ring
            locked.stage_started_at = now
            # The next stage bakes once enough of it runs the release.
            locked.bake_started_at = None
            locked.failing_streak = 0
            locked.save(
                update_fields=[
                    "current_ring",
                    "stage_started_at",
                    "bake_started_at",
                    "failing_streak",
                    "updated_at",
                ]
            )
            reason = reason or f"{decision.reason} {deployed_sentence(locked, deployed)}"
        changes = _state_change(before, locked, deployments=deployed, override=override)
        if locked.status == RolloutStatus.COMPLETED:
            # Its release is now the fleet's current release and the target of later rollbacks.
            changes["release"] = release_completed(release=locked.release)
        audit_record(
            actor=actor,
            action=action,
            obj=locked,
            rollout=locked,
            from_ring=from_ring,
            to_ring=next_ring,
            reason=reason,
            changes=changes,
            evaluation=evaluation_payload(record),
        )
    return rollout


def rollout_pause(
    *,
    rollout: Rollout,
    actor: Actor,
    reason: str = "",
    evaluation: Evaluation | None = None,
    automatic: bool | None = None,
) -> Rollout:
    """active → paused, staying in its ring. Devices already deploying go on; no ring is added."""
    automatic = actor is None if automatic is None else automatic
    action = _automatic_action(RolloutAction.PAUSE, automatic)
    with _transition(
        rollout, PAUSE, actor=actor, action=action, reason=reason, automatic=automatic
    ) as locked:
        before = locked.state
        locked.status = RolloutStatus.PAUSED
        locked.save(update_fields=["status", "updated_at"])
        audit_record(
            actor=actor,
            action=action,
            obj=locked,
            rollout=locked,
            from_ring=locked.current_ring,
            reason=reason or f"Paused by {actor_label(actor)} in {locked.current_ring}.",
            changes=_state_change(before, locked),
            evaluation=evaluation_payload(evaluation) if evaluation else None,
        )
    return rollout


def rollout_resume(
    *,
    rollout: Rollout,
    actor: Actor,
    reason: str = "",
    evaluation: Evaluation | None = None,
    override: bool = False,
) -> Rollout:
    """paused → active in the ring it was paused in, after a fresh judgement of that ring: refused
    while the ring fails (PAUSE or ROLLBACK), allowed when it passes or waits (WAIT). The ring's
    bake starts again: now when its installed share is met, else once it is.

    `override` (a person with a reason) resumes on a PAUSE verdict too and records an OVERRIDE
    event with the judgement it overrode; a ROLLBACK verdict is never overridden."""
    action = RolloutAction.RESUME
    automatic = actor is None
    _check_override(override, actor=actor, reason=reason)
    with _transition(
        rollout,
        RESUME,
        actor=actor,
        action=action,
        reason=reason,
        automatic=automatic,
        spreads="resume a rollout",
        override=override,
    ) as locked:
        now = timezone.now()
        decision, record = _judge(rollout=locked, evaluation=evaluation, now=now)
        if override:
            _refuse_rollback_verdict(RESUME, decision, record)
        elif decision.action in (Action.PAUSE, Action.ROLLBACK):
            raise GatesRefused(
                f"Cannot resume: {decision.action.value}", decision=decision, evaluation=record
            )
        record = record or evaluation_store(
            rollout=locked, decision=decision, source=_source(automatic), now=now
        )
        if override:
            _audit_override(locked, actor=actor, transition=RESUME, reason=reason, record=record)
        before = locked.state
        locked.status = RolloutStatus.ACTIVE
        locked.stage_started_at = now
        locked.bake_started_at = now if (decision.evaluation.get("install") or {}).get("met") else None
        locked.failing_streak = 0
        locked.save(
            update_fields=["status", "stage_started_at", "bake_started_at", "failing_streak", "updated_at"]
        )
        audit_record(
            actor=actor,
            action=action,
            obj=locked,
            rollout=locked,
            to_ring=locked.current_ring,
            reason=reason or f"Resumed in {locked.current_ring}: {decision.reason}",
            changes=_state_change(before, locked, override=override),
            evaluation=evaluation_payload(record),
        )
    return rollout


# --- Overrides -----------------------------------------------------------------------------------


def _check_override(override: bool, *, actor: Actor, reason: str) -> None:
    """An override is a person's, with a reason that says why the gates are wrong this time."""
    if not override:
        return
    if actor_user(actor) is None:
        raise bad_input("Only a person can override the gates.", field="override")
    if not reason.strip():
        raise bad_input("An override needs a reason.", field="reason")


def _refuse_rollback_verdict(transition: str, decision: Decision, record: Evaluation | None) -> None:
    if decision.action == Action.ROLLBACK:
        raise GatesRefused(
            f"Cannot {_VERBS[transition]} against a ROLLBACK verdict, even with an override: "
            f"{decision.reason}",
            decision=decision,
            evaluation=record,
        )


def _audit_override(
    rollout: Rollout, *, actor: Actor, transition: str, reason: str, record: Evaluation
) -> None:
    """The OVERRIDE event: who went past which verdict and why, with the judgement overridden. The
    transition's own event follows it, marked `override`."""
    audit_record(
        actor=actor,
        action=RolloutAction.OVERRIDE,
        obj=rollout,
        rollout=rollout,
        from_ring=rollout.current_ring,
        reason=reason.strip(),
        changes={"transition": transition, "overridden": record.action},
        evaluation=evaluation_payload(record),
    )


def rollout_rollback(
    *,
    rollout: Rollout,
    actor: Actor,
    reason: str,
    evaluation: Evaluation | None = None,
    automatic: bool | None = None,
) -> Rollout:
    """Any non-terminal state, or completed → rolled_back. Devices that received the release go
    back to the release current before it (rolling_back, see fleet_release.rollback_target);
    devices that had not started are cancelled. A completed rollout needs a reason, and is refused
    while a newer rollout has reached its devices since."""
    if rollout.status == RolloutStatus.COMPLETED and not reason.strip():
        raise bad_input("Rolling back a completed rollout needs a reason.", field="reason")
    automatic = actor is None if automatic is None else automatic
    action = _automatic_action(RolloutAction.ROLLBACK, automatic)
    with _transition(
        rollout, ROLLBACK, actor=actor, action=action, reason=reason, automatic=automatic
    ) as locked:
        now = timezone.now()
        was_completed = locked.status == RolloutStatus.COMPLETED
        if was_completed and (superseded := rollback_refusal(locked)):
            raise ServiceRefused(superseded)
        rolling_back, cancelled = deployments_roll_back(rollout=locked, now=now)
        before, from_ring = locked.state, locked.current_ring
        locked.status = RolloutStatus.ROLLED_BACK
        locked.finished_at = now
        locked.save(update_fields=["status", "finished_at", "updated_at"])
        changes = _state_change(
            before,
            locked,
            deployments={
                "rolling_back": rolling_back,
                "cancelled": cancelled,
                "back_to_version": ", ".join(rollback_versions(locked)) or None,
            },
        )
        if was_completed:
            changes["release"] = release_completion_rolled_back(release=locked.release)
        audit_record(
            actor=actor,
            action=action,
            obj=locked,
            rollout=locked,
            from_ring=from_ring,
            reason=reason.strip() or f"Rolled back by {actor_label(actor)}.",
            changes=changes,
            evaluation=evaluation_payload(evaluation) if evaluation else None,
        )
    return rollout


def _check_worth_rolling_out(
    release: Release, stages: list[dict], *, starting: Rollout | None = None
) -> None:
    """Refuse (409) a rollout that would change nothing: every device its stages target already
    runs the release. When `starting` it, also one that would race another rollout of the release
    under way (creating it beforehand is fine: it can wait for the other one to finish)."""
    if starting is not None:
        other = (
            Rollout.objects.filter(release=release, status__in=(RolloutStatus.ACTIVE, RolloutStatus.PAUSED))
            .exclude(pk=starting.pk)
            .order_by("-created_at")
            .first()
        )
        if other is not None:
            raise ServiceRefused(
                f"{release.version} is already being rolled out by {other.rollout_id} "
                f"({describe_state(other)}); finish or roll back that rollout first."
            )
    refusal = already_running_refusal(release, stages)
    if refusal:
        raise ServiceRefused(refusal)


def rollback_refusal(rollout: Rollout) -> str | None:
    """Why a completed rollout cannot be rolled back now, or None: a newer rollout (under way or
    completed) has reached some of its devices since, and taking this one back first would pull
    them from under it."""
    if rollout.status != RolloutStatus.COMPLETED:
        return None
    devices = DeviceDeployment.objects.filter(rollout=rollout).values("device_id")
    newer = (
        Rollout.objects.filter(
            status__in=(RolloutStatus.ACTIVE, RolloutStatus.PAUSED, RolloutStatus.COMPLETED),
            created_at__gt=rollout.created_at,
            deployments__device_id__in=devices,
        )
        .select_related("release")
        .order_by("-created_at")
        .first()
    )
    if newer is None:
        return None
    reached = DeviceDeployment.objects.filter(rollout=newer, device_id__in=devices).count()
    return (
        f"Cannot roll back {rollout.rollout_id}: {newer.rollout_id} of {newer.release.version} has since "
        f"reached {reached} of its devices and is {describe_state(newer)}; roll that back first."
    )


class Transition(Protocol):
    def __call__(self, *, rollout: Rollout, actor: Actor, reason: str) -> Rollout: ...


# The transitions people ask for by name: the portal's buttons and the admin's actions.
TRANSITIONS: dict[str, Transition] = {
    START: rollout_start,
    PROMOTE: rollout_promote,
    PAUSE: rollout_pause,
    RESUME: rollout_resume,
    ROLLBACK: rollout_rollback,
}
# The transitions a person may take past the gates' WAIT or PAUSE verdict, with a reason.
OVERRIDES = {PROMOTE: rollout_promote, RESUME: rollout_resume}


@contextmanager
def _transition(
    rollout: Rollout,
    transition: str,
    *,
    actor: Actor,
    action: str,
    reason: str,
    automatic: bool,
    spreads: str | None = None,
    override: bool = False,
) -> Iterator[Rollout]:
    """The frame of every transition: one transaction holding the locked, checked rollout row (the
    body changes it and writes its audit event), a refusal audited once that transaction is gone,
    and the caller's instance brought up to date after commit. `spreads` names an action that takes
    the release further, which the emergency stop refuses."""
    with (
        _refusals_audited(
            rollout=rollout, actor=actor, action=action, reason=reason, automatic=automatic, override=override
        ),
        transaction.atomic(),
    ):
        locked = _lock(rollout, transition)
        if spreads:
            emergency_stop_check(spreads)
        yield locked
    _sync(rollout, locked)


def _lock(rollout: Rollout, transition: str) -> Rollout:
    """Lock the rollout row and check that `transition` may start from what is there now.

    Every transition takes this lock first, so a person's promote and SafeRoll's rollback of one
    rollout queue up here instead of both writing. Only the rollout row is locked (of=self): the
    release and plan are read, never written, by a transition. The second in the queue then finds
    the state the first left; if that is not the state its caller decided on (the instance it
    passed in), the decision is stale and is refused, so a race ends in exactly one transition."""
    locked = (
        Rollout.objects.select_for_update(of=("self",)).select_related("release", "plan").get(pk=rollout.pk)
    )
    refusal = transition_refusal(locked, transition)
    if refusal:
        raise ServiceRefused(refusal)
    # A pause needs no exact ring: stopping the rollout wherever it has got to is what was asked.
    stale = locked.status != rollout.status or (
        transition != PAUSE and locked.current_ring != rollout.current_ring
    )
    if stale:
        raise ServiceRefused(
            f"Cannot {_VERBS[transition]} {locked.rollout_id}: it went from {rollout.state} to {locked.state} "
            "while this request was on its way; look at it again before acting."
        )
    return locked


@contextmanager
def _refusals_audited(
    *, rollout: Rollout, actor: Actor, action: str, reason: str, automatic: bool, override: bool = False
) -> Iterator[None]:
    """Audit a refused attempt after its transaction has rolled back, then let the refusal through.

    Entered before the transition's transaction.atomic, so it sees the refusal only once that
    transaction is gone and its own write commits on its own (inside a caller's transaction it is a
    savepoint of that transaction, and stands or falls with it)."""
    try:
        yield
    except ServiceRefused as refused:
        with transaction.atomic():
            current = Rollout.objects.get(pk=rollout.pk)
            record = None
            if isinstance(refused, GatesRefused):
                record = refused.evaluation or evaluation_store(
                    rollout=current, decision=refused.decision, source=_source(automatic)
                )
            changes: dict[str, Any] = {"state": current.state}
            if reason:
                changes["requested_reason"] = reason
            if override:
                changes["override"] = True
            audit_record(
                actor=actor,
                action=refused_action(action),
                obj=current,
                rollout=current,
                from_ring=current.current_ring,
                reason=refused.message,
                changes=changes,
                evaluation=evaluation_payload(record) if record else None,
            )
        raise


def _state_change(
    before: str, rollout: Rollout, *, deployments: dict | None = None, override: bool = False
) -> dict[str, Any]:
    changes: dict[str, Any] = {"before": {"state": before}, "after": {"state": rollout.state}}
    if deployments is not None:
        changes["deployments"] = deployments
    if override:
        changes["override"] = True
    return changes


def _automatic_action(action: str, automatic: bool) -> str:
    return _AUTOMATIC.get(action, action) if automatic else action


def _source(automatic: bool) -> str:
    return EvaluationSource.AUTOPILOT if automatic else EvaluationSource.REQUEST


def _sync(rollout: Rollout, locked: Rollout) -> Rollout:
    """Bring the caller's instance up to date, so the next call with it is not seen as stale."""
    for field in _STATE_FIELDS:
        setattr(rollout, field, getattr(locked, field))
    return rollout
