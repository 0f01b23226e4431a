"""What the autopilot does with each decision, driven one round at a time with an explicit clock."""

import datetime as dt

import pytest
from django.utils import timezone

from devices.choices import DeviceStatus
from devices.services import devices_mark_offline
from rollouts import autopilot
from rollouts.choices import DeploymentState, IncidentSeverity, RolloutStatus
from rollouts.models import DeviceDeployment, Evaluation, Rollout
from rollouts.services import lifecycle
from rollouts.services.emergency import emergency_stop_lift, emergency_stop_raise
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import Alert, AuditEvent, FleetState
from saferoll.portal import broadcast
from tests.autopilot.conftest import activate_ring, report
from tests.factories import DeviceFactory, HealthCheckFactory, IncidentFactory

pytestmark = pytest.mark.django_db

PERIOD = dt.timedelta(seconds=10)


def rounds(rollout: Rollout, count: int, *, start: dt.datetime) -> list[Evaluation | None]:
    return [autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=start + PERIOD * i) for i in range(count)]


def events(rollout: Rollout) -> list[str]:
    return list(AuditEvent.objects.filter(rollout=rollout).order_by("id").values_list("action", flat=True))


def test_it_rolls_back_at_once_on_a_critical_failure(make_rollout):
    rollout = make_rollout()
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.80, at=now)

    evaluation = autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)

    rollout.refresh_from_db()
    assert evaluation.action == "ROLLBACK"
    assert rollout.status == RolloutStatus.ROLLED_BACK
    event = AuditEvent.objects.get(rollout=rollout, action="AUTO_ROLLBACK")
    assert event.actor_name == "saferoll" and event.actor is None
    assert "crash-free rate 80.0%" in event.reason
    assert rollout.deployments.filter(state=DeploymentState.ROLLING_BACK).count() == 20
    alert = Alert.objects.get(rollout=rollout)
    assert alert.kind == "AUTO_ROLLBACK" and alert.level == "critical"


def test_it_pauses_only_when_a_non_critical_failure_is_sustained(make_rollout):
    rollout = make_rollout(consecutive_failures_to_pause=3)
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.98, at=now)

    first_two = rounds(rollout, 2, start=now)
    rollout.refresh_from_db()
    assert [e.action for e in first_two] == ["PAUSE", "PAUSE"]
    assert rollout.status == RolloutStatus.ACTIVE
    assert rollout.failing_streak == 2

    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now + PERIOD * 2)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    event = AuditEvent.objects.get(rollout=rollout, action="AUTO_PAUSE")
    assert "3 evaluations in a row" in event.reason
    assert Alert.objects.filter(rollout=rollout, kind="AUTO_PAUSE").exists()


def test_a_healthy_round_resets_the_failing_streak(make_rollout):
    rollout = make_rollout(consecutive_failures_to_pause=2)
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.98, at=now)
    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)
    later = now + dt.timedelta(minutes=6)  # the bad checks have left the window
    report(rollout, "pilot", crash_free=0.999, at=later)
    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=later)
    rollout.refresh_from_db()
    assert rollout.failing_streak == 0
    assert rollout.status == RolloutStatus.ACTIVE


def test_it_does_nothing_when_too_few_devices_reported(make_rollout):
    rollout = make_rollout()
    now = timezone.now()
    # The ring has just activated: three devices have reported, the others are still in their grace.
    activate_ring(rollout, "pilot", at=now)
    report(rollout, "pilot", crash_free=0.5, at=now, count=3)

    evaluations = rounds(rollout, 5, start=now)

    rollout.refresh_from_db()
    assert {e.action for e in evaluations} == {"WAIT"}
    assert rollout.status == RolloutStatus.ACTIVE
    assert rollout.failing_streak == 0
    assert events(rollout) == ["CREATED", "START"]


def test_it_rolls_back_when_the_ring_goes_silent(make_rollout):
    rollout = make_rollout()
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.999, at=now, count=3)

    evaluation = autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)

    assert evaluation.action == "ROLLBACK"
    assert "reporting rate 15.0%" in AuditEvent.objects.get(rollout=rollout, action="AUTO_ROLLBACK").reason


def test_it_stores_every_evaluation_it_makes(make_rollout):
    rollout = make_rollout()
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.999, at=now)
    rounds(rollout, 3, start=now)
    stored = Evaluation.objects.filter(rollout=rollout, source="autopilot")
    assert stored.count() == 3
    assert stored.first().detail["gates"]["crash_free_rate"]["passed"] is True


def test_it_advances_after_the_bake_time_when_the_plan_says_so(make_rollout):
    rollout = make_rollout(auto_advance=True, bake_minutes=5)
    share_met = timezone.now()
    report(rollout, "pilot", crash_free=0.999, at=share_met)

    first = autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=share_met)
    rollout.refresh_from_db()
    # The stage started ten minutes ago, but its bake runs from the judgement that found it installed.
    assert (first.action, first.reason) == ("WAIT", "Baking: 5 min left of 5 min in pilot.")
    assert rollout.bake_started_at == share_met

    at = share_met + dt.timedelta(minutes=4)
    report(rollout, "pilot", crash_free=0.999, at=at)
    waiting = autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=at)
    rollout.refresh_from_db()
    assert rollout.current_ring == "pilot"
    assert waiting.reason == "Baking: 1 min left of 5 min in pilot."
    assert waiting.detail["bake"]["remaining_seconds"] == 60

    at = share_met + dt.timedelta(minutes=6)
    report(rollout, "pilot", crash_free=0.999, at=at)
    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=at)
    rollout.refresh_from_db()
    assert rollout.current_ring == "ring_5"
    assert rollout.bake_started_at is None
    assert "AUTO_PROMOTE" in events(rollout)


def test_it_neither_bakes_nor_advances_until_the_installed_share_is_met(make_rollout):
    rollout = make_rollout(auto_advance=True, bake_minutes=0)
    # 5 of the 20 pilot devices have not installed: 75% run the release, 90% are needed.
    pending = [deployment.pk for deployment in rollout.deployments.filter(ring="pilot")][15:]
    DeviceDeployment.objects.filter(pk__in=pending).update(state=DeploymentState.PENDING, activated_at=None)
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.999, at=now, count=15)

    evaluation = autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)

    rollout.refresh_from_db()
    assert evaluation.action == "WAIT"
    assert evaluation.reason == f"Installing: 15 of 20 devices run {rollout.release.version}; 90% needed."
    assert evaluation.detail["install"] == {
        "targeted": 20,
        "installed": 15,
        "unreachable": 0,
        "incompatible": 0,
        "share": 0.75,
        "min_share": 0.9,
        "met": False,
    }
    assert (rollout.current_ring, rollout.bake_started_at) == ("pilot", None)


def test_it_waits_for_a_person_when_the_plan_does_not_auto_advance(make_rollout):
    rollout = make_rollout(auto_advance=False)
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.999, at=now)
    rounds(rollout, 3, start=now)
    rollout.refresh_from_db()
    assert rollout.current_ring == "pilot"


def test_it_completes_the_last_ring_by_itself_after_its_bake_time(make_rollout):
    rollout = make_rollout(auto_advance=False)
    last = rollout.stages[-1]["ring"]
    Rollout.objects.filter(pk=rollout.pk).update(
        current_ring=last, stage_started_at=timezone.now() - dt.timedelta(minutes=10)
    )
    devices = [DeviceFactory(ring=last, app_version=rollout.release.version) for _ in range(12)]
    for device in devices:
        DeviceDeployment.objects.create(
            rollout=rollout,
            device=device,
            ring=last,
            state=DeploymentState.ACTIVATED,
            activated_at=timezone.now() - dt.timedelta(minutes=10),
        )
    now = timezone.now()
    for device in devices:
        HealthCheckFactory(device=device, version=rollout.release.version, crash_free=0.999, received_at=now)

    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.COMPLETED
    assert events(rollout)[-1] == "COMPLETED"


def test_a_duplicated_evaluation_is_harmless(make_rollout):
    rollout = make_rollout(consecutive_failures_to_pause=2)
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.98, at=now)

    first = autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)
    again = autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now + dt.timedelta(seconds=1))

    rollout.refresh_from_db()
    assert first is not None and again is None
    assert rollout.failing_streak == 1
    assert rollout.status == RolloutStatus.ACTIVE


def test_an_open_sev1_incident_pauses_the_release_and_names_it(make_rollout):
    rollout = make_rollout()
    incident = IncidentFactory(severity=IncidentSeverity.SEV1, title="ICU TVs black", release=rollout.release)

    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=timezone.now())

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    event = AuditEvent.objects.get(rollout=rollout, action="AUTO_PAUSE")
    assert f"#{incident.pk}" in event.reason and "ICU TVs black" in event.reason


def test_resolving_the_incident_resumes_nothing_by_itself(make_rollout):
    rollout = make_rollout()
    report(rollout, "pilot", crash_free=0.999, at=timezone.now())
    incident = IncidentFactory(severity=IncidentSeverity.SEV1, title="ICU TVs black", release=rollout.release)
    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=timezone.now())
    incident.status = "resolved"
    incident.save(update_fields=["status"])
    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=timezone.now() + PERIOD)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED


def test_a_stuck_deployment_step_fails_after_its_timeout(make_rollout, settings):
    settings.SAFEROLL_DEPLOYMENT_STEP_TIMEOUT_SECONDS = 900
    rollout = make_rollout()
    now = timezone.now()
    stuck, moving = list(rollout.deployments.all()[:2])
    DeviceDeployment.objects.filter(pk=stuck.pk).update(
        state=DeploymentState.DOWNLOADING, state_changed_at=now - dt.timedelta(minutes=16)
    )
    DeviceDeployment.objects.filter(pk=moving.pk).update(
        state=DeploymentState.DOWNLOADING, state_changed_at=now - dt.timedelta(minutes=14)
    )

    assert autopilot.deployments_fail_stuck(now=now) == 1
    assert autopilot.deployments_fail_stuck(now=now) == 0

    stuck.refresh_from_db()
    moving.refresh_from_db()
    assert stuck.state == DeploymentState.FAILED and "Stuck in downloading" in stuck.last_error
    assert moving.state == DeploymentState.DOWNLOADING


def test_a_device_not_back_after_a_rollback_is_flagged_once_with_an_alert(make_rollout, settings):
    settings.SAFEROLL_ROLLBACK_TARGET_SECONDS = 600
    rollout = make_rollout()
    lifecycle.rollout_rollback(rollout=rollout, actor=None, reason="test")
    now = timezone.now()
    late = rollout.deployments.first()
    DeviceDeployment.objects.filter(pk=late.pk).update(rolling_back_at=now - dt.timedelta(minutes=11))

    assert autopilot.deployments_flag_slow_rollbacks(now=now) == 1
    assert autopilot.deployments_flag_slow_rollbacks(now=now) == 0

    late.device.refresh_from_db()
    assert late.device.status == DeviceStatus.INVESTIGATE
    assert Alert.objects.filter(kind="DEVICE_FLAGGED", device=late.device).count() == 1
    assert AuditEvent.objects.filter(action="DEVICE_FLAGGED", object_id=str(late.device.pk)).count() == 1


def test_silent_devices_go_offline(db, settings):
    settings.SAFEROLL_OFFLINE_AFTER_SECONDS = 180
    now = timezone.now()
    silent = DeviceFactory(last_heartbeat=now - dt.timedelta(minutes=4))
    alive = DeviceFactory(last_heartbeat=now - dt.timedelta(minutes=2))
    flagged = DeviceFactory(last_heartbeat=now - dt.timedelta(hours=1), status=DeviceStatus.INVESTIGATE)

    assert devices_mark_offline(now=now) == 1

    for device in (silent, alive, flagged):
        device.refresh_from_db()
    assert (silent.status, alive.status, flagged.status) == ("offline", "online", "investigate")


def test_the_emergency_stop_pauses_everything_and_refuses_promotion(make_rollout, persona):
    rollout = make_rollout()
    operator = persona("operator").user
    emergency_stop_raise(actor=operator, reason="Hospital network incident")

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    assert FleetState.load().emergency_stop
    with pytest.raises(ServiceRefused, match="emergency stop"):
        lifecycle.rollout_resume(rollout=rollout, actor=operator, reason="try")
    assert AuditEvent.objects.filter(action="EMERGENCY_STOP", actor=operator).exists()

    emergency_stop_lift(actor=operator, reason="Network back")
    assert not FleetState.load().emergency_stop
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED  # lifting resumes nothing by itself


def test_the_emergency_stop_refuses_new_starts(fleet, make_rollout):
    rollout = make_rollout()
    emergency_stop_raise(actor=None, reason="drill")
    fresh = lifecycle.rollout_create(release=rollout.release, plan=rollout.plan, actor=None)
    with pytest.raises(ServiceRefused, match="emergency stop"):
        lifecycle.rollout_start(rollout=fresh, actor=None)


def test_a_fleet_wide_failure_raises_the_emergency_stop_by_itself(make_rollout, settings):
    settings.SAFEROLL_FLEET_MIN_DEVICES = 20
    rollout = make_rollout()
    now = timezone.now()
    devices = [DeviceFactory() for _ in range(30)]
    for index, device in enumerate(devices):
        HealthCheckFactory(device=device, crash_free=0.80 if index < 8 else 0.999, received_at=now)

    assert autopilot.fleet_check_health(now=now) is True
    assert autopilot.fleet_check_health(now=now) is False  # already on: nothing twice

    state = FleetState.load()
    assert state.emergency_stop and "8 of 30" in state.emergency_reason
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED


def test_a_healthy_fleet_keeps_running(db, settings):
    settings.SAFEROLL_FLEET_MIN_DEVICES = 20
    now = timezone.now()
    for index in range(30):
        HealthCheckFactory(crash_free=0.80 if index < 5 else 0.999, received_at=now)
    assert autopilot.fleet_check_health(now=now) is False
    assert not FleetState.load().emergency_stop


def test_it_still_rolls_back_a_paused_rollout_whose_ring_turns_critical(make_rollout, persona):
    rollout = make_rollout()
    lifecycle.rollout_pause(rollout=rollout, actor=persona("operator").user, reason="looking into it")
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.80, at=now)

    evaluation = autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)

    rollout.refresh_from_db()
    assert evaluation.action == "ROLLBACK"
    assert rollout.status == RolloutStatus.ROLLED_BACK
    assert events(rollout)[-1] == "AUTO_ROLLBACK"


def test_it_leaves_a_paused_rollout_to_people_when_it_is_failing_but_not_critical(make_rollout, persona):
    rollout = make_rollout(consecutive_failures_to_pause=1)
    lifecycle.rollout_pause(rollout=rollout, actor=persona("operator").user, reason="looking into it")
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.98, at=now)

    assert rounds(rollout, 3, start=now) == [None, None, None]

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    assert not Evaluation.objects.filter(rollout=rollout, source="autopilot").exists()


def test_an_emergency_stop_does_not_shelter_the_release_that_caused_it(make_rollout, settings):
    settings.SAFEROLL_FLEET_MIN_DEVICES = 20
    rollout = make_rollout()
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.80, at=now)

    assert autopilot.fleet_check_health(now=now) is True
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED

    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK


@pytest.fixture
def live_messages(monkeypatch):
    """The live messages the portal's broadcast hands to the channel layer, by type, in order."""
    sent: list[str] = []
    monkeypatch.setattr(broadcast, "_send", lambda message, what: sent.append(message["type"]))
    return sent


# Committed for real, so that each change's messages go out when it commits, as in production.
@pytest.mark.django_db(transaction=True)
def test_an_automatic_rollback_is_one_live_rollout_update_and_its_alert(make_rollout, live_messages):
    rollout = make_rollout()
    now = timezone.now()
    report(rollout, "pilot", crash_free=0.80, at=now)
    live_messages.clear()

    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)

    # The evaluation, the transition's audit event and the alert are one change: the page hears of the
    # rollout once (its timeline carries the evaluation), and the operators get the alert's toast.
    assert live_messages == ["rollout_update", "alert"]


@pytest.mark.django_db(transaction=True)
def test_a_judgement_that_changes_nothing_is_announced_as_an_evaluation(make_rollout, live_messages):
    rollout = make_rollout()
    now = timezone.now()
    activate_ring(rollout, "pilot", at=now)
    report(rollout, "pilot", crash_free=0.5, at=now, count=3)
    live_messages.clear()

    autopilot.autopilot_evaluate(rollout_id=rollout.pk, now=now)

    assert live_messages == ["evaluation"]
