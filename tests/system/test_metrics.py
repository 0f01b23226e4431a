"""GET /metrics (SPEC §13): the fleet as the database knows it, this process's ingestion counters, the token."""

import datetime as dt
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from devices.choices import DeviceStatus
from rollouts.choices import EvaluationSource, RolloutStatus
from rollouts.services import lifecycle
from saferoll.core.alerts import alert_raise
from saferoll.core.models import AlertLevel, FleetState
from tests.conftest import client_for
from tests.factories import (
    DeviceFactory,
    EvaluationFactory,
    HealthCheckFactory,
    ReleaseFactory,
    RolloutFactory,
    RolloutPlanFactory,
    UserFactory,
)
from tests.system.metrics_support import family_types, scrape, value
from tests.telemetry.support import check, device_client

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def gateway(db):
    """A site gateway: reports checks for any enrolled device."""
    user = UserFactory(username="gateway")
    user.user_permissions.add(Permission.objects.get(codename="ingest_health"))
    return client_for(user)


# --- Fleet state, read from the database ---------------------------------------------------------


def test_it_counts_rollouts_by_status_and_active_rollouts_by_ring():
    RolloutFactory.create_batch(2, status=RolloutStatus.ACTIVE, current_ring="pilot")
    RolloutFactory(status=RolloutStatus.ACTIVE, current_ring="ring_25")
    RolloutFactory(status=RolloutStatus.PAUSED, current_ring="ring_5")
    RolloutFactory(status=RolloutStatus.COMPLETED, current_ring="ring_100")

    samples = scrape()

    assert {
        status: value(samples, "saferoll_rollouts", status=status) for status in RolloutStatus.values
    } == {
        "created": 0,
        "active": 3,
        "paused": 1,
        "completed": 1,
        "rolled_back": 0,
    }
    assert {
        ring: value(samples, "saferoll_active_rollouts", ring=ring)
        for ring in ("pilot", "ring_5", "ring_25", "ring_100")
    } == {
        "pilot": 2,
        "ring_5": 0,
        "ring_25": 1,
        "ring_100": 0,
    }


def test_it_counts_devices_by_status():
    DeviceFactory.create_batch(3, status=DeviceStatus.ONLINE)
    DeviceFactory(status=DeviceStatus.OFFLINE)

    samples = scrape()

    assert value(samples, "saferoll_devices", status="online") == 3
    assert value(samples, "saferoll_devices", status="offline") == 1
    assert value(samples, "saferoll_devices", status="investigate") == 0


def test_it_counts_the_health_checks_received_in_the_last_minute_by_ring():
    now = timezone.now()
    pilot, ring_5 = DeviceFactory(ring="pilot"), DeviceFactory(ring="ring_5")
    for seconds in (5, 30):
        HealthCheckFactory(device=pilot, received_at=now - dt.timedelta(seconds=seconds))
    HealthCheckFactory(device=ring_5, received_at=now - dt.timedelta(seconds=10))
    HealthCheckFactory(device=ring_5, received_at=now - dt.timedelta(minutes=5))

    samples = scrape()

    assert value(samples, "saferoll_health_checks_last_minute", ring="pilot") == 2
    assert value(samples, "saferoll_health_checks_last_minute", ring="ring_5") == 1
    # A silent ring reads 0 rather than disappearing.
    assert value(samples, "saferoll_health_checks_last_minute", ring="ring_100") == 0


def test_it_counts_stored_evaluations_by_decision_and_source():
    EvaluationFactory.create_batch(2, action="PROMOTE", source=EvaluationSource.AUTOPILOT)
    EvaluationFactory(action="ROLLBACK", source=EvaluationSource.AUTOPILOT)
    EvaluationFactory(action="WAIT", source=EvaluationSource.REQUEST)

    samples = scrape()

    def evaluations(action, source):
        return value(samples, "saferoll_evaluations_total", action=action, source=source)

    assert evaluations("PROMOTE", "autopilot") == 2
    assert evaluations("ROLLBACK", "autopilot") == 1
    assert evaluations("WAIT", "request") == 1
    assert evaluations("PAUSE", "autopilot") == 0
    assert evaluations("PROMOTE", "request") == 0


def test_it_counts_rollout_transitions_by_people_and_by_the_autopilot():
    DeviceFactory(ring="pilot")
    manager = UserFactory(role="release_manager")
    rollout = lifecycle.rollout_create(release=ReleaseFactory(), plan=RolloutPlanFactory(), actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    lifecycle.rollout_pause(rollout=rollout, actor=manager, reason="Looking at a report.")
    lifecycle.rollout_rollback(rollout=rollout, actor=None, reason="Crash-free rate below the line.")

    samples = scrape()

    def transitions(action):
        return value(samples, "saferoll_rollout_transitions_total", action=action)

    assert [transitions(action) for action in ("CREATED", "START", "PAUSE", "AUTO_ROLLBACK")] == [1, 1, 1, 1]
    assert transitions("ROLLBACK") == 0
    assert transitions("AUTO_PROMOTE") == 0


def test_it_exports_evaluations_and_transitions_as_counters_and_the_rest_as_gauges():
    text = Client().get("/metrics").content.decode()

    types = family_types(text)

    assert types["saferoll_evaluations"] == "counter"
    assert types["saferoll_rollout_transitions"] == "counter"
    assert types["saferoll_health_checks_received"] == "counter"
    assert types["saferoll_rollouts"] == "gauge"
    assert types["saferoll_health_checks_last_minute"] == "gauge"


def test_it_counts_unacknowledged_alerts_by_level():
    alert_raise(level=AlertLevel.CRITICAL, kind="AUTO_ROLLBACK", title="Rolled back")
    alert_raise(level=AlertLevel.WARNING, kind="AUTO_PAUSE", title="Paused")
    acknowledged = alert_raise(level=AlertLevel.WARNING, kind="AUTO_PAUSE", title="Paused again")
    acknowledged.acknowledged_at = timezone.now()
    acknowledged.save(update_fields=["acknowledged_at"])

    samples = scrape()

    assert value(samples, "saferoll_open_alerts", level="critical") == 1
    assert value(samples, "saferoll_open_alerts", level="warning") == 1
    assert value(samples, "saferoll_open_alerts", level="info") == 0


def test_it_shows_the_emergency_stop():
    assert value(scrape(), "saferoll_emergency_stop") == 0
    FleetState.load()
    FleetState.objects.filter(pk=1).update(emergency_stop=True)

    assert value(scrape(), "saferoll_emergency_stop") == 1


def test_it_reports_an_autopilot_that_stopped_as_stale_with_the_age_of_its_last_round():
    FleetState.load()
    FleetState.objects.filter(pk=1).update(autopilot_last_run=timezone.now() - dt.timedelta(hours=1))

    samples = scrape()

    assert value(samples, "saferoll_autopilot_last_run_age_seconds") >= 3600
    assert value(samples, "saferoll_autopilot_stale") == 1


def test_it_reports_a_running_autopilot_as_not_stale():
    FleetState.load()
    FleetState.objects.filter(pk=1).update(autopilot_last_run=timezone.now())

    assert value(scrape(), "saferoll_autopilot_stale") == 0


def test_it_reports_an_autopilot_that_never_ran_as_stale_without_an_age():
    samples = scrape()

    assert value(samples, "saferoll_autopilot_stale") == 1
    assert not any(name == "saferoll_autopilot_last_run_age_seconds" for name, _ in samples)


# --- Ingestion, counted by the process that took the checks --------------------------------------


def test_it_counts_checks_accepted_duplicate_and_rejected_through_the_api(gateway):
    device, other = DeviceFactory(ring="pilot"), DeviceFactory(ring="pilot")
    before = scrape()
    client = device_client(device)

    assert client.post("/api/health", check(device.device_id), format="json").status_code == 200
    assert client.post("/api/health", check(device.device_id), format="json").status_code == 200  # a retry
    assert client.post("/api/health", check(device.device_id, crash_free=7), format="json").status_code == 400
    assert client.post("/api/health", check(other.device_id), format="json").status_code == 403
    batch = [
        check(device.device_id, timestamp="2025-11-18T10:31:00Z"),
        check(other.device_id),
        check(device.device_id),  # stored above
        check("no-such-device"),
        check(other.device_id, boot_ok="maybe"),
    ]
    assert gateway.post("/api/health/batch", batch, format="json").json() | {"rejected": None} == {
        "accepted": 2,
        "duplicates": 1,
        "rejected": None,
    }
    after = scrape()

    def added(outcome):
        name = "saferoll_health_checks_received_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert (added("accepted"), added("duplicate"), added("rejected")) == (3, 2, 4)
    assert value(after, "saferoll_health_checks_last_minute", ring="pilot") == 3


def test_it_adds_up_the_counters_of_every_process_sharing_the_multiprocess_directory(tmp_path, monkeypatch):
    # Another process (a second gunicorn worker, say) takes checks and keeps its counts in the directory.
    took_checks = "from telemetry.metrics import record_ingested; record_ingested(accepted=3, duplicates=1)"
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-c", took_checks],
            env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(django_settings.BASE_DIR)},
            check=True,
        )
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    samples = scrape()

    assert value(samples, "saferoll_health_checks_received_total", outcome="accepted") == 6
    assert value(samples, "saferoll_health_checks_received_total", outcome="duplicate") == 2
    assert value(samples, "saferoll_rollouts", status="active") == 0  # the fleet is still read


# --- Access ---------------------------------------------------------------------------------------


def test_it_is_open_when_no_token_is_configured(settings):
    settings.SAFEROLL_METRICS_TOKEN = ""

    response = Client().get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", f"Token {TOKEN}", TOKEN])
def test_it_refuses_a_scrape_without_the_configured_token(settings, authorization):
    settings.SAFEROLL_METRICS_TOKEN = TOKEN
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = Client().get("/metrics", **headers)

    assert response.status_code == 401
    assert response.json() == {
        "error": "Metrics need an 'Authorization: Bearer <token>' header with the SAFEROLL_METRICS_TOKEN."
    }
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_it_answers_a_scrape_with_the_configured_token(settings):
    settings.SAFEROLL_METRICS_TOKEN = TOKEN
    RolloutFactory(status=RolloutStatus.ACTIVE, current_ring="pilot")

    samples = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert value(samples, "saferoll_rollouts", status="active") == 1


def test_it_answers_only_get():
    assert Client().post("/metrics").status_code == 405
