"""The rollout state machine under any sequence of actions from any actor (hypothesis.stateful).

A real rollout in the real database is driven through the services, as the API, the portal and the
admin drive it (each first asks rollouts.permissions, then calls the service): a release manager,
an operator who may only pause, and the autopilot (actor None). A simulated clock moves on, and as it
does the ring's devices install the release and report health as the release treats them (healthy,
failing, critical, not booting, silent); Sev1 incidents open and close.
The emergency stop goes up and down. Refusals are expected. After every step:

- the rollout is in exactly one valid state, its ring and timestamps agreeing with it;
- every state change has exactly one audit event, and the transition events chain from the
  state at creation to the state now;
- no promotion stood on a stored evaluation that failed a gate, unless a person allowed to
  override the gates overrode a WAIT or PAUSE verdict (never a ROLLBACK);
- a finished rollout stays finished; a rolled-back one never changes again.
"""

import contextlib
import datetime as dt
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from rollouts import autopilot
from rollouts.choices import (
    TERMINAL_STATUSES,
    DeploymentState,
    IncidentSeverity,
    IncidentStatus,
    RolloutAction,
    RolloutStatus,
)
from rollouts.gates import GateConfig
from rollouts.models import DeviceDeployment, Evaluation, Incident, Rollout
from rollouts.permissions import can_act, can_override_gates, override_refusal
from rollouts.services import lifecycle
from rollouts.services.emergency import emergency_stop_lift, emergency_stop_raise
from saferoll.core import roles
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AuditEvent
from telemetry.models import HealthCheck as Check
from tests.factories import DeviceFactory, ReleaseFactory, RolloutPlanFactory, UserFactory

pytestmark = pytest.mark.django_db

RINGS = ("pilot", "ring_5", "ring_100")
DEVICES_PER_RING = 4
# The actions that move a rollout from one state to another; each is audited once.
TRANSITION_ACTIONS = {
    RolloutAction.START,
    RolloutAction.PROMOTE,
    RolloutAction.AUTO_PROMOTE,
    RolloutAction.COMPLETED,
    RolloutAction.PAUSE,
    RolloutAction.AUTO_PAUSE,
    RolloutAction.RESUME,
    RolloutAction.ROLLBACK,
    RolloutAction.AUTO_ROLLBACK,
}
PROMOTIONS = {RolloutAction.PROMOTE, RolloutAction.AUTO_PROMOTE, RolloutAction.COMPLETED}
# How the release's devices report: (crash-free, boot ok, share of them reporting). Failing pauses,
# critical and not booting roll back (000 §9.3), silent leaves too few reports to judge.
HEALTH = {
    "healthy": (0.998, True, 1.0),
    "failing": (0.98, True, 1.0),
    "critical": (0.80, True, 1.0),
    "not booting": (0.998, False, 1.0),
    "silent": (0.998, True, 0.25),
}
LIVE = (DeploymentState.PENDING, DeploymentState.DOWNLOADING, DeploymentState.VERIFIED)
# Weighted towards what takes a rollout further, so that examples get past the first ring.
someone = st.sampled_from(["manager", "manager", "operator"])
transitions = st.sampled_from([lifecycle.PROMOTE] * 3 + [lifecycle.RESUME] * 2 + list(lifecycle.TRANSITIONS))
reasons = st.sampled_from(["", "Checked the dashboards."])
# Mostly acting on the rollout as it is; now and then on a page that has gone stale.
mostly_fresh = st.sampled_from([True, True, False])


class RolloutMachine(RuleBasedStateMachine):
    """One rollout per example, inside a savepoint rolled back at its end; the fleet and the people
    (`people`, set by the test) outlive the examples."""

    people: dict[str, object] = {}

    @initialize(
        stages=st.integers(min_value=1, max_value=len(RINGS)),
        auto_advance=st.booleans(),
        bake_minutes=st.sampled_from([0, 0, 1]),
        started=st.sampled_from([True, True, False]),
    )
    def create(self, stages, auto_advance, bake_minutes, started):
        """A plan of one to three stages (fewer finish more often) and its rollout, often started."""
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.now = timezone.now()
        # One clock for everything the services stamp: `now=` where they take it, timezone.now elsewhere.
        self.clock = mock.patch.object(timezone, "now", lambda: self.now)
        self.clock.start()
        config = GateConfig(min_sample=3, consecutive_failures_to_pause=2).to_dict()
        plan = RolloutPlanFactory(
            name="machine",
            stages=[
                {"ring": ring, "bake_minutes": bake_minutes, "auto_advance": auto_advance}
                for ring in RINGS[:stages]
            ],
            gate_config=config,
        )
        self.release = ReleaseFactory(version="v9.0", previous_release=ReleaseFactory(version="v2.0"))
        rollout = lifecycle.rollout_create(release=self.release, plan=plan, actor=self.people["manager"])
        if started:
            lifecycle.rollout_start(rollout=rollout, actor=self.people["manager"])
        self.pk = rollout.pk
        self.page = rollout
        self.seen_event = AuditEvent.objects.filter(rollout=rollout).order_by("id").last().pk
        self.seen_state = rollout.state
        self.seen_status = rollout.status
        self.health = "healthy"

    def teardown(self):
        if hasattr(self, "atomic"):
            self.clock.stop()
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

    def rollout(self) -> Rollout:
        return Rollout.objects.select_related("release").get(pk=self.pk)

    # --- what people do, through the permission check every door makes --------------------------

    @rule(who=someone, transition=transitions, reason=reasons, fresh=mostly_fresh, override=st.booleans())
    def person_acts(self, who, transition, reason, fresh, override):
        """A person asks for a transition, on the rollout as it is now or as their page last showed
        it; the door refuses what their role may not do before any service is called."""
        user = self.people[who]
        override = override and transition in lifecycle.OVERRIDES
        if not can_act(user, transition) or (override and override_refusal(user)):
            return
        page = self.rollout() if fresh else self.page
        options = {"override": True} if override else {}
        with contextlib.suppress(ServiceRefused):
            lifecycle.TRANSITIONS[transition](rollout=page, actor=user, reason=reason, **options)
        self.page = self.rollout()

    @rule()
    def person_evaluates(self):
        """Asking the gates stores and changes nothing."""
        with contextlib.suppress(ServiceRefused):
            lifecycle.rollout_evaluate(rollout=self.rollout())

    # --- what SafeRoll does ---------------------------------------------------------------------

    @rule()
    def autopilot_round(self):
        with contextlib.suppress(ServiceRefused):
            autopilot.autopilot_evaluate(rollout_id=self.pk, now=self.now)

    @rule(seconds=st.integers(min_value=1, max_value=400))
    def time_passes(self, seconds):
        """The clock moves on and the devices of the ring deployed install the release and report
        as the release treats them (a silent share of them does not report at all)."""
        self.now += dt.timedelta(seconds=seconds)
        rollout = self.rollout()
        if rollout.status not in (RolloutStatus.ACTIVE, RolloutStatus.PAUSED):
            return
        deployments = DeviceDeployment.objects.filter(rollout=rollout, ring=rollout.current_ring)
        deployments.filter(state__in=LIVE).update(
            state=DeploymentState.ACTIVATED, activated_at=self.now, state_changed_at=self.now
        )
        devices = deployments.filter(state=DeploymentState.ACTIVATED).values_list("device_id", flat=True)
        crash_free, boot_ok, share = HEALTH[self.health]
        reporting = list(devices)[: round(len(devices) * share)]
        Check.objects.bulk_create(
            Check(
                device_id=device,
                ring=rollout.current_ring,
                version=rollout.release.version,
                boot_ok=boot_ok,
                crash_free=crash_free,
                checkin_latency_ms=60,
                device_time=self.now,
                received_at=self.now,
            )
            for device in reporting
        )

    # --- what happens in the field ---------------------------------------------------------------

    @rule(health=st.sampled_from(list(HEALTH)))
    def release_behaves(self, health):
        """From now on the release's devices are healthy, failing, critical, not booting or silent."""
        self.health = health

    @rule(opens=st.sampled_from([IncidentSeverity.SEV1, IncidentSeverity.SEV2, None]))
    def incidents(self, opens):
        """An incident on the release opens, or every one of them is resolved."""
        if opens:
            Incident.objects.create(severity=opens, title="TVs black in ICU", release=self.release)
        else:
            Incident.objects.filter(release=self.release).update(
                status=IncidentStatus.RESOLVED, resolved_at=self.now
            )

    @rule(raised=st.sampled_from([False, False, True]))
    def emergency_stop(self, raised):
        """An operator raises the fleet's emergency stop (pausing every active rollout) or lifts it."""
        change = emergency_stop_raise if raised else emergency_stop_lift
        change(actor=self.people["operator"], reason="Hospital network down.")

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def invariants_hold(self):
        """All of them on one read of the rollout: after every step, and after the creation."""
        rollout = self.rollout()
        self.one_valid_state(rollout)
        self.each_transition_audited_once(rollout)
        self.finished_stays_finished(rollout)

    def one_valid_state(self, rollout: Rollout) -> None:
        assert rollout.status in RolloutStatus.values
        ring = rollout.current_ring
        if rollout.status == RolloutStatus.CREATED:
            assert ring is None and rollout.started_at is None
        elif rollout.status == RolloutStatus.COMPLETED:
            assert ring == rollout.ring_names[-1]
        elif rollout.status == RolloutStatus.ROLLED_BACK:
            # Taken back before it started, or from the ring it had reached.
            assert ring is None if rollout.started_at is None else ring in RINGS
        else:
            assert ring in RINGS and rollout.started_at is not None
        assert (rollout.finished_at is not None) == (rollout.status in TERMINAL_STATUSES)

    def each_transition_audited_once(self, rollout: Rollout) -> None:
        """And each promotion stood on gates that passed, or on an allowed override."""
        new = list(AuditEvent.objects.filter(rollout_id=self.pk, pk__gt=self.seen_event).order_by("id"))
        transitions = [event for event in new if event.action in TRANSITION_ACTIONS]
        # Every rule makes at most one transition.
        assert len(transitions) <= 1, [event.action for event in new]
        state = self.seen_state
        for event in transitions:
            assert event.changes["before"]["state"] == state
            state = event.changes["after"]["state"]
            assert state != event.changes["before"]["state"]
            if event.action in PROMOTIONS:
                self._check_promotion(event, new)
        assert state == rollout.state, "a state change without its audit event"
        for override in (event for event in new if event.action == RolloutAction.OVERRIDE):
            # An override is recorded only with the transition it let through.
            assert any(event.pk > override.pk and event.changes.get("override") for event in transitions)
        if new:
            self.seen_event = new[-1].pk

    def _check_promotion(self, event: AuditEvent, new: list[AuditEvent]) -> None:
        """The promotion stood on the ring's last stored evaluation; it passed every gate, or a person
        allowed to overrode a WAIT or PAUSE verdict, and said so."""
        evaluation = Evaluation.objects.get(pk=event.evaluation["evaluation_id"])
        assert evaluation.ring == event.from_ring
        last = Evaluation.objects.filter(rollout_id=self.pk, ring=evaluation.ring).latest("created_at", "id")
        assert last.pk == evaluation.pk
        if evaluation.action == "PROMOTE":
            assert all(gate["passed"] for gate in evaluation.detail["gates"].values())
            return
        override = next((e for e in new if e.action == RolloutAction.OVERRIDE), None)
        assert override is not None, f"promoted on {evaluation.action} without an override"
        assert override.evaluation["evaluation_id"] == evaluation.pk
        assert override.actor is not None and can_override_gates(override.actor)
        assert evaluation.action in ("WAIT", "PAUSE")
        assert event.changes.get("override") is True

    def finished_stays_finished(self, rollout: Rollout) -> None:
        if self.seen_status in TERMINAL_STATUSES:
            assert rollout.status in TERMINAL_STATUSES
        if self.seen_status == RolloutStatus.ROLLED_BACK:
            assert rollout.state == self.seen_state
        self.seen_status, self.seen_state = rollout.status, rollout.state


@pytest.fixture
def people(role_groups):
    return {
        "manager": UserFactory(username="machine-manager", role=roles.RELEASE_MANAGER),
        "operator": UserFactory(username="machine-operator", role=roles.OPERATOR),
    }


@pytest.fixture
def fleet(db):
    """The rings' devices on v2.0; every example's rollout targets them afresh."""
    for ring in RINGS:
        for index in range(DEVICES_PER_RING):
            DeviceFactory(ring=ring, device_id=f"machine-{ring}-{index}", app_version="v2.0")


def test_any_sequence_of_actions_keeps_the_rollout_invariants(people, fleet):
    machine = type("Machine", (RolloutMachine,), {"people": people})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
