"""The rollout services: creation, every transition of SPEC §3, what they deploy, and their audit."""

import datetime as dt

import pytest
from django.utils import timezone

from devices.models import CohortMembership
from rollouts.choices import DeploymentState, EvaluationSource, RolloutStatus
from rollouts.gates import Action, GateConfig
from rollouts.models import DeviceDeployment, Evaluation, Rollout
from rollouts.services import lifecycle, plans
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AuditEvent, FleetState
from tests.factories import (
    CohortFactory,
    DeviceFactory,
    HardwareVariantFactory,
    ReleaseFactory,
    RolloutPlanFactory,
)
from tests.rollouts.helpers import activate, age_out_checks, report

pytestmark = pytest.mark.django_db


def events(rollout: Rollout) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(rollout=rollout).order_by("created_at", "id"))


def last_event(rollout: Rollout) -> AuditEvent:
    return events(rollout)[-1]


def set_state(rollout: Rollout, status: str, ring: str | None) -> Rollout:
    """Put a rollout in a state directly: the setup of a test about what happens from there."""
    Rollout.objects.filter(pk=rollout.pk).update(status=status, current_ring=ring)
    rollout.refresh_from_db()
    return rollout


# --- Creation ------------------------------------------------------------------------------------


def test_it_creates_a_rollout_with_the_plans_stages_and_gates_frozen(plan, release, manager):
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    assert rollout.state == "created"
    assert rollout.current_ring is None
    assert rollout.ring_names == ["pilot", "ring_5", "ring_25", "ring_100"]
    assert rollout.gate_config == GateConfig(min_sample=10, min_checks=10).to_dict()
    assert rollout.created_by == manager
    event = last_event(rollout)
    assert (event.action, event.actor, event.object_type) == ("CREATED", manager, "rollout")
    assert event.changes["after"] == {
        "state": "created",
        "version": "v2.1",
        "plan": "test-plan",
        "rings": rollout.ring_names,
    }


def test_it_keeps_the_frozen_plan_when_the_plan_changes_later(rollout, plan, manager):
    plans.plan_update(plan=plan, actor=manager, stages=[{"ring": "everyone"}], gate_config={"min_sample": 99})

    rollout.refresh_from_db()
    assert rollout.ring_names == ["pilot", "ring_5", "ring_25", "ring_100"]
    assert rollout.gate_config["min_sample"] == 10


def test_it_follows_the_default_plan_when_none_is_named(plan, release, manager):
    RolloutPlanFactory(name="other")

    assert lifecycle.rollout_create(release=release, actor=manager).plan == plan


def test_it_stores_the_presets_when_no_plan_is_the_default(release, manager):
    rollout = lifecycle.rollout_create(release=release, actor=manager)

    assert rollout.plan.name == "demo"
    assert rollout.plan.is_default


def test_it_refuses_to_create_a_rollout_of_a_broken_plan(release, manager):
    broken = RolloutPlanFactory(name="broken", stages=[{"ring": "paused"}])

    with pytest.raises(ServiceRefused, match="'paused' is a rollout state"):
        lifecycle.rollout_create(release=release, plan=broken, actor=manager)
    assert not Rollout.objects.exists()


# --- Start and what it deploys -------------------------------------------------------------------


def test_it_starts_into_the_first_ring_and_deploys_its_devices(rollout, manager, fleet):
    started = lifecycle.rollout_start(rollout=rollout, actor=manager)

    assert started.state == "pilot"
    assert started.status == RolloutStatus.ACTIVE
    assert started.started_at is not None
    assert started.stage_started_at == started.started_at
    deployments = DeviceDeployment.objects.filter(rollout=rollout)
    assert {d.device_id for d in deployments} == {device.pk for device in fleet["pilot"]}
    assert {(d.ring, d.state, d.from_version) for d in deployments} == {("pilot", "pending", "v2.0")}
    event = last_event(rollout)
    assert (event.action, event.from_ring, event.to_ring) == ("START", None, "pilot")
    assert event.changes == {
        "before": {"state": "created"},
        "after": {"state": "pilot"},
        "deployments": {
            "ring": "pilot",
            "targeted": 20,
            "skipped_incompatible": 0,
            "skipped_busy": 0,
            "skipped_current": 0,
            "skipped_revoked": 0,
        },
    }
    assert event.reason == "Deploying v2.1 to 20 devices of pilot."


def test_it_skips_devices_whose_variant_the_release_does_not_support(plan, manager):
    supported, other = HardwareVariantFactory(name="tv-55-gen3"), HardwareVariantFactory(name="kiosk-gen1")
    release = ReleaseFactory(version="v2.2")
    release.compatible_variants.set([supported])
    good = [DeviceFactory(ring="pilot", variant=supported) for _ in range(3)]
    DeviceFactory(ring="pilot", variant=other)
    DeviceFactory(ring="pilot", variant=None)
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    lifecycle.rollout_start(rollout=rollout, actor=manager)

    assert set(DeviceDeployment.objects.filter(rollout=rollout).values_list("device_id", flat=True)) == {
        device.pk for device in good
    }
    assert last_event(rollout).changes["deployments"]["skipped_incompatible"] == 2
    assert "skipped 2 with an unsupported hardware variant" in last_event(rollout).reason


def test_it_deploys_a_release_for_every_variant_to_devices_without_one(plan, release, manager):
    bare = DeviceFactory(ring="pilot", variant=None)
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    lifecycle.rollout_start(rollout=rollout, actor=manager)

    assert DeviceDeployment.objects.filter(rollout=rollout, device=bare).exists()


def test_it_skips_devices_still_live_in_another_active_or_paused_rollout(plan, release, manager, fleet):
    pilot = fleet["pilot"]
    other = lifecycle.rollout_create(release=ReleaseFactory(version="v1.9"), plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=other, actor=manager)
    lifecycle.rollout_pause(rollout=other, actor=manager)
    # Devices whose deployment in the other rollout is over are free again.
    DeviceDeployment.objects.filter(rollout=other, device__in=pilot[:5]).update(state=DeploymentState.FAILED)
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    lifecycle.rollout_start(rollout=rollout, actor=manager)

    targeted = set(DeviceDeployment.objects.filter(rollout=rollout).values_list("device_id", flat=True))
    assert targeted == {device.pk for device in pilot[:5]}
    assert last_event(rollout).changes["deployments"]["skipped_busy"] == 15


def test_it_does_not_count_devices_of_a_finished_rollout_as_busy(plan, release, manager, fleet):
    other = lifecycle.rollout_create(release=ReleaseFactory(version="v1.9"), plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=other, actor=manager)
    report(other, "pilot")
    lifecycle.rollout_rollback(rollout=other, actor=manager, reason="Bad build.")
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    lifecycle.rollout_start(rollout=rollout, actor=manager)

    assert DeviceDeployment.objects.filter(rollout=rollout).count() == 20


def test_it_takes_over_devices_a_completed_rollout_had_not_reached(plan, release, manager, fleet):
    older = lifecycle.rollout_create(release=ReleaseFactory(version="v2.05"), plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=older, actor=manager)
    Rollout.objects.filter(pk=older.pk).update(status=RolloutStatus.COMPLETED)
    behind, arrived = fleet["pilot"][:3], fleet["pilot"][3:]
    DeviceDeployment.objects.filter(rollout=older, device__in=arrived).update(state=DeploymentState.ACTIVATED)
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    lifecycle.rollout_start(rollout=rollout, actor=manager)

    assert DeviceDeployment.objects.filter(rollout=rollout).count() == 20
    states = dict(DeviceDeployment.objects.filter(rollout=older).values_list("device_id", "state"))
    assert {states[device.pk] for device in behind} == {DeploymentState.CANCELLED}
    assert {states[device.pk] for device in arrived} == {DeploymentState.ACTIVATED}


def test_it_deploys_a_cohort_stage_to_the_cohorts_members(release, manager, fleet):
    canaries = CohortFactory(name="canaries")
    members = [fleet["ring_100"][0], fleet["ring_25"][0], fleet["pilot"][0]]
    for device in members:
        CohortMembership.objects.create(cohort=canaries, device=device)
    plan = RolloutPlanFactory(
        name="canary-first", stages=[{"ring": "canary", "cohort": "canaries"}, {"ring": "pilot"}]
    )
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    lifecycle.rollout_start(rollout=rollout, actor=manager)

    deployments = DeviceDeployment.objects.filter(rollout=rollout)
    assert {(d.device_id, d.ring) for d in deployments} == {(device.pk, "canary") for device in members}
    assert last_event(rollout).changes["deployments"]["cohort"] == "canaries"


def test_it_does_not_deploy_a_device_twice_when_a_later_stage_includes_it(release, manager, fleet):
    canaries = CohortFactory(name="canaries")
    CohortMembership.objects.create(cohort=canaries, device=fleet["pilot"][0])
    plan = RolloutPlanFactory(
        name="canary-first",
        stages=[{"ring": "canary", "cohort": "canaries"}, {"ring": "pilot"}],
        gate_config={"min_sample": 1, "min_checks": 1},
    )
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    report(rollout, "canary")

    lifecycle.rollout_promote(rollout=rollout, actor=manager)

    assert DeviceDeployment.objects.filter(rollout=rollout, ring="pilot").count() == 19
    assert DeviceDeployment.objects.filter(rollout=rollout, device=fleet["pilot"][0]).get().ring == "canary"


def test_it_refuses_to_start_a_stage_whose_cohort_does_not_exist(release, manager, fleet):
    plan = RolloutPlanFactory(name="ghost", stages=[{"ring": "canary", "cohort": "nobody"}])
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    with pytest.raises(ServiceRefused, match="cohort 'nobody' does not exist"):
        lifecycle.rollout_start(rollout=rollout, actor=manager)
    assert Rollout.objects.get(pk=rollout.pk).state == "created"
    assert not DeviceDeployment.objects.exists()
    assert last_event(rollout).action == "START_REFUSED"


def test_it_deploys_the_devices_of_every_fleet_ring_a_stage_names(release, manager, fleet):
    plan = RolloutPlanFactory(
        name="merged", stages=[{"ring": "pilot"}, {"ring": "ring_25", "rings": ["ring_5", "ring_25"]}]
    )
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    report(rollout, "pilot")

    lifecycle.rollout_promote(rollout=rollout, actor=manager)

    assert DeviceDeployment.objects.filter(rollout=rollout, ring="ring_25").count() == 12 + 15


# --- Promote -------------------------------------------------------------------------------------


def test_it_promotes_to_the_next_ring_when_the_gates_pass(started, manager, fleet):
    report(started, "pilot")

    promoted = lifecycle.rollout_promote(rollout=started, actor=manager, reason="Pilot looks good.")

    assert promoted.state == "ring_5"
    assert promoted.failing_streak == 0
    assert DeviceDeployment.objects.filter(rollout=started, ring="ring_5", state="pending").count() == 12
    assert DeviceDeployment.objects.filter(rollout=started, ring="pilot", state="activated").count() == 20
    evaluation = Evaluation.objects.get(rollout=started)
    assert (evaluation.ring, evaluation.action, evaluation.source) == (
        "pilot",
        "PROMOTE",
        EvaluationSource.REQUEST,
    )
    event = last_event(started)
    assert (event.action, event.from_ring, event.to_ring, event.reason) == (
        "PROMOTE",
        "pilot",
        "ring_5",
        "Pilot looks good.",
    )
    assert event.evaluation["evaluation_id"] == evaluation.pk
    assert event.evaluation["overall"] == "PASS"
    assert event.evaluation["gates"]["crash_free_rate"]["passed"] is True
    assert event.changes["deployments"]["targeted"] == 12


def test_it_refuses_to_promote_when_the_gates_say_pause(started, manager):
    report(started, "pilot", crash_free=0.985)

    with pytest.raises(lifecycle.GatesRefused) as refused:
        lifecycle.rollout_promote(rollout=started, actor=manager)

    assert refused.value.message == "Cannot promote: PAUSE"
    assert refused.value.decision.action == Action.PAUSE
    assert refused.value.decision.evaluation["gates"]["crash_free_rate"]["passed"] is False
    assert Rollout.objects.get(pk=started.pk).state == "pilot"
    assert not DeviceDeployment.objects.filter(rollout=started, ring="ring_5").exists()
    event = last_event(started)
    assert (event.action, event.actor.username, event.from_ring) == ("PROMOTE_REFUSED", "rm", "pilot")
    assert event.reason == "Cannot promote: PAUSE"
    assert event.evaluation["overall"] == "FAIL"
    assert Evaluation.objects.get(pk=event.evaluation["evaluation_id"]).action == "PAUSE"


def test_it_refuses_to_promote_while_too_few_devices_reported(started, manager):
    # Installed just now, within the reporting grace: no device owes a check yet.
    activate(started, "pilot", ago=dt.timedelta(0))

    with pytest.raises(lifecycle.GatesRefused, match="Cannot promote: WAIT") as refused:
        lifecycle.rollout_promote(rollout=started, actor=manager)

    assert "Too little data: 0 of the 10 devices" in refused.value.decision.reason
    assert Rollout.objects.get(pk=started.pk).state == "pilot"


def test_it_completes_when_the_last_ring_passes(started, manager):
    for ring in ["pilot", "ring_5", "ring_25"]:
        report(started, ring)
        lifecycle.rollout_promote(rollout=started, actor=manager)
    report(started, "ring_100")

    completed = lifecycle.rollout_promote(rollout=started, actor=manager)

    assert completed.state == "completed"
    assert completed.finished_at is not None
    assert [event.action for event in events(started)] == [
        "CREATED",
        "START",
        "PROMOTE",
        "PROMOTE",
        "PROMOTE",
        "COMPLETED",
    ]
    event = last_event(started)
    assert (event.from_ring, event.to_ring) == ("ring_100", None)
    assert event.evaluation["ring"] == "ring_100"


# --- Illegal transitions -------------------------------------------------------------------------

ILLEGAL = [
    ("start", "active", "pilot", "it is active in pilot; it has already started"),
    ("start", "paused", "pilot", "it is paused in pilot; it has already started"),
    ("start", "completed", "ring_100", "it is completed; a finished rollout cannot change"),
    ("start", "rolled_back", "pilot", "it is rolled back; a finished rollout cannot change"),
    ("promote", "created", None, "it is created and not started yet; start it first"),
    ("promote", "paused", "ring_5", "it is paused in ring_5; resume it first"),
    ("promote", "completed", "ring_100", "it is completed"),
    ("promote", "rolled_back", "pilot", "it is rolled back"),
    ("pause", "created", None, "it is created and not started yet"),
    ("pause", "paused", "pilot", "it is already paused"),
    ("pause", "completed", "ring_100", "it is completed"),
    ("pause", "rolled_back", None, "it is rolled back"),
    ("resume", "created", None, "only a paused rollout can be resumed"),
    ("resume", "active", "pilot", "only a paused rollout can be resumed"),
    ("resume", "completed", "ring_100", "it is completed"),
    ("resume", "rolled_back", "ring_5", "it is rolled back"),
    ("rollback", "rolled_back", "pilot", "a finished rollout cannot change"),
]
SERVICES = {
    "start": lifecycle.rollout_start,
    "promote": lifecycle.rollout_promote,
    "pause": lifecycle.rollout_pause,
    "resume": lifecycle.rollout_resume,
    "rollback": lambda **kwargs: lifecycle.rollout_rollback(reason="Because.", **kwargs),
}


@pytest.mark.parametrize(("transition", "status", "ring", "why"), ILLEGAL, ids=lambda v: str(v))
def test_it_refuses_an_illegal_transition_with_a_sentence_and_audits_the_attempt(
    rollout, manager, transition, status, ring, why
):
    rollout = set_state(rollout, status, ring)

    with pytest.raises(ServiceRefused) as refused:
        SERVICES[transition](rollout=rollout, actor=manager)

    assert refused.value.message.startswith(
        f"Cannot {transition.replace('rollback', 'roll back')} {rollout.rollout_id}"
    )
    assert why in refused.value.message
    assert refused.value.message.endswith(".")
    current = Rollout.objects.get(pk=rollout.pk)
    assert (current.status, current.current_ring) == (status, ring)
    event = last_event(rollout)
    assert event.action == f"{transition.upper()}_REFUSED"
    assert (event.actor, event.reason, event.changes["state"]) == (
        manager,
        refused.value.message,
        current.state,
    )
    assert not DeviceDeployment.objects.filter(rollout=rollout).exists()


# --- Pause, resume, rollback ---------------------------------------------------------------------


def test_it_pauses_an_active_rollout_in_its_ring(started, manager):
    paused = lifecycle.rollout_pause(rollout=started, actor=manager, reason="Investigating tickets.")

    assert (paused.state, paused.current_ring) == ("paused", "pilot")
    event = last_event(started)
    assert (event.action, event.from_ring, event.reason) == ("PAUSE", "pilot", "Investigating tickets.")
    assert event.changes == {"before": {"state": "pilot"}, "after": {"state": "paused"}}


def test_it_resumes_in_the_ring_it_was_paused_in_once_healthy(started, manager):
    report(started, "pilot")
    lifecycle.rollout_pause(rollout=started, actor=manager)

    resumed = lifecycle.rollout_resume(rollout=started, actor=manager)

    assert resumed.state == "pilot"
    event = last_event(started)
    assert (event.action, event.to_ring) == ("RESUME", "pilot")
    assert event.evaluation["overall"] == "PASS"
    assert Evaluation.objects.filter(rollout=started, action="PROMOTE").count() == 1


def test_it_resumes_while_there_is_too_little_data_to_judge(started, manager):
    lifecycle.rollout_pause(rollout=started, actor=manager)

    assert lifecycle.rollout_resume(rollout=started, actor=manager).state == "pilot"
    assert last_event(started).evaluation["overall"] == "WAIT"


@pytest.mark.parametrize(("crash_free", "action"), [(0.985, "PAUSE"), (0.90, "ROLLBACK")])
def test_it_refuses_to_resume_while_the_ring_fails_then_allows_it_once_healthy(
    started, manager, crash_free, action
):
    report(started, "pilot", crash_free=crash_free)
    lifecycle.rollout_pause(rollout=started, actor=manager)

    with pytest.raises(lifecycle.GatesRefused, match=f"Cannot resume: {action}") as refused:
        lifecycle.rollout_resume(rollout=started, actor=manager)

    assert refused.value.decision.action == action
    assert Rollout.objects.get(pk=started.pk).state == "paused"
    assert last_event(started).action == "RESUME_REFUSED"
    assert last_event(started).evaluation["action"] == action

    age_out_checks()  # time passes, and the fix is out: every device now reports well
    report(started, "pilot", crash_free=0.999)
    assert lifecycle.rollout_resume(rollout=started, actor=manager).state == "pilot"


@pytest.mark.parametrize("status", ["created", "active", "paused"])
def test_it_rolls_back_from_any_state_that_is_not_final(rollout, manager, status):
    if status != "created":
        lifecycle.rollout_start(rollout=rollout, actor=manager)
    if status == "paused":
        lifecycle.rollout_pause(rollout=rollout, actor=manager)
    before = rollout.state

    rolled_back = lifecycle.rollout_rollback(rollout=rollout, actor=manager, reason="Bad build.")

    assert rolled_back.state == "rolled_back"
    assert rolled_back.finished_at is not None
    event = last_event(rollout)
    assert (event.action, event.reason, event.changes["before"]) == (
        "ROLLBACK",
        "Bad build.",
        {"state": before},
    )


def test_it_sends_devices_that_received_the_release_back_and_cancels_the_rest(started, manager):
    pilot = list(DeviceDeployment.objects.filter(rollout=started).order_by("pk"))
    states = ["downloading", "verified", "activated", "failed", "pending"]
    for deployment, state in zip(pilot, states, strict=False):
        DeviceDeployment.objects.filter(pk=deployment.pk).update(state=state)
    previous = ReleaseFactory(version="v2.0", is_stable=True)
    started.release.previous_release = previous
    started.release.save(update_fields=["previous_release"])

    lifecycle.rollout_rollback(rollout=started, actor=manager, reason="Crash loop.")

    after = {d.pk: d for d in DeviceDeployment.objects.filter(rollout=started)}
    assert [after[d.pk].state for d in pilot[:5]] == [
        "rolling_back",
        "rolling_back",
        "rolling_back",
        "failed",
        "cancelled",
    ]
    assert all(after[d.pk].rolling_back_at is not None for d in pilot[:3])
    assert after[pilot[4].pk].rolling_back_at is None
    assert {after[d.pk].state for d in pilot[5:]} == {"cancelled"}
    assert last_event(started).changes["deployments"] == {
        "rolling_back": 3,
        "cancelled": 16,
        "back_to_version": "v2.0",
    }


def test_it_gives_a_rollback_without_a_reason_one(started, manager):
    lifecycle.rollout_rollback(rollout=started, actor=manager, reason="  ")

    assert last_event(started).reason == "Rolled back by rm."


# --- SafeRoll acting by itself -------------------------------------------------------------------


def test_it_records_what_saferoll_does_as_automatic_actions(started):
    report(started, "pilot")
    lifecycle.rollout_promote(rollout=started, actor=None)
    lifecycle.rollout_pause(rollout=started, actor=None, reason="Failing 3 evaluations in a row.")
    lifecycle.rollout_rollback(rollout=started, actor=None, reason="Crash-free rate critical.")

    automatic = events(started)[-3:]
    assert [event.action for event in automatic] == ["AUTO_PROMOTE", "AUTO_PAUSE", "AUTO_ROLLBACK"]
    assert {(event.actor, event.actor_name) for event in automatic} == {(None, "saferoll")}
    assert Evaluation.objects.get(rollout=started).source == EvaluationSource.AUTOPILOT


def test_it_records_an_automatic_action_of_a_person_when_told_so(started, manager):
    lifecycle.rollout_pause(rollout=started, actor=manager, automatic=True)

    assert last_event(started).action == "AUTO_PAUSE"


def test_it_acts_on_the_evaluation_the_autopilot_stored(started):
    report(started, "pilot", crash_free=0.90)
    decision = lifecycle.rollout_evaluate(rollout=started)
    stored = lifecycle.evaluation_store(rollout=started, decision=decision, source=EvaluationSource.AUTOPILOT)

    lifecycle.rollout_rollback(rollout=started, actor=None, reason=decision.reason, evaluation=stored)

    event = last_event(started)
    assert event.action == "AUTO_ROLLBACK"
    assert event.evaluation["evaluation_id"] == stored.pk
    assert event.evaluation["action"] == "ROLLBACK"
    assert Evaluation.objects.count() == 1


def test_it_promotes_on_the_autopilots_evaluation_without_judging_again(started):
    report(started, "pilot")
    decision = lifecycle.rollout_evaluate(rollout=started)
    stored = lifecycle.evaluation_store(rollout=started, decision=decision, source=EvaluationSource.AUTOPILOT)

    lifecycle.rollout_promote(rollout=started, actor=None, evaluation=stored)

    assert Evaluation.objects.count() == 1
    assert last_event(started).evaluation["evaluation_id"] == stored.pk


def test_it_judges_afresh_when_the_evaluation_passed_in_is_of_another_ring(started, manager):
    report(started, "pilot")
    stale = lifecycle.evaluation_store(
        rollout=started,
        decision=lifecycle.rollout_evaluate(rollout=started),
        source=EvaluationSource.AUTOPILOT,
    )
    lifecycle.rollout_promote(rollout=started, actor=manager)

    with pytest.raises(lifecycle.GatesRefused, match="WAIT"):
        lifecycle.rollout_promote(rollout=started, actor=None, evaluation=stale)


def test_it_evaluates_the_current_ring_without_storing_anything(started):
    report(started, "pilot")

    decision = lifecycle.rollout_evaluate(rollout=started)

    assert decision.action == Action.PROMOTE
    assert decision.evaluation["health"]["total_devices"] == 20
    assert not Evaluation.objects.exists()


def test_it_refuses_to_evaluate_a_rollout_without_a_deployed_ring(rollout):
    with pytest.raises(ServiceRefused, match="no ring is deployed"):
        lifecycle.rollout_evaluate(rollout=rollout)


# --- Stale decisions and the emergency stop ------------------------------------------------------


def test_it_refuses_a_decision_taken_on_a_state_that_has_changed_since(started, manager):
    report(started, "pilot")
    seen_by_autopilot = Rollout.objects.get(pk=started.pk)
    lifecycle.rollout_promote(rollout=started, actor=manager)

    with pytest.raises(ServiceRefused, match="went from pilot to ring_5"):
        lifecycle.rollout_rollback(rollout=seen_by_autopilot, actor=None, reason="Pilot is critical.")

    assert Rollout.objects.get(pk=started.pk).state == "ring_5"
    assert [event.action for event in events(started)][-2:] == ["PROMOTE", "AUTO_ROLLBACK_REFUSED"]


def test_it_pauses_wherever_the_rollout_has_got_to(started, manager):
    report(started, "pilot")
    seen_earlier = Rollout.objects.get(pk=started.pk)
    lifecycle.rollout_promote(rollout=started, actor=manager)

    assert lifecycle.rollout_pause(rollout=seen_earlier, actor=manager).current_ring == "ring_5"


@pytest.mark.parametrize("transition", ["start", "promote", "resume"])
def test_it_refuses_to_spread_a_release_during_an_emergency_stop(rollout, manager, transition):
    if transition != "start":
        lifecycle.rollout_start(rollout=rollout, actor=manager)
        report(rollout, "pilot")
    if transition == "resume":
        lifecycle.rollout_pause(rollout=rollout, actor=manager)
    FleetState.objects.update_or_create(
        pk=1,
        defaults={
            "emergency_stop": True,
            "emergency_reason": "Hospital outage",
            "emergency_raised_at": timezone.now(),
        },
    )
    before = rollout.state

    with pytest.raises(ServiceRefused, match="emergency stop is on"):
        SERVICES[transition](rollout=rollout, actor=manager)

    assert Rollout.objects.get(pk=rollout.pk).state == before
    assert last_event(rollout).action == f"{transition.upper()}_REFUSED"


def test_it_still_pauses_and_rolls_back_during_an_emergency_stop(started, manager):
    FleetState.objects.update_or_create(
        pk=1, defaults={"emergency_stop": True, "emergency_raised_at": timezone.now()}
    )

    lifecycle.rollout_pause(rollout=started, actor=manager)
    lifecycle.rollout_rollback(rollout=started, actor=manager, reason="Stop everything.")

    assert Rollout.objects.get(pk=started.pk).state == "rolled_back"


def test_it_keeps_the_callers_instance_up_to_date(started, manager):
    report(started, "pilot")
    lifecycle.rollout_promote(rollout=started, actor=manager)
    lifecycle.rollout_pause(rollout=started, actor=manager)

    assert (started.status, started.current_ring) == ("paused", "ring_5")
    assert DeviceDeployment.objects.filter(rollout=started).count() == 32
