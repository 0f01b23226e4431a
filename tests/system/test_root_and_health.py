"""The system endpoints of 000 §5.4: the root status and the monitoring health check."""

import datetime as dt

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from rollouts.choices import RolloutStatus
from saferoll.core.models import FleetState
from tests.factories import DeviceFactory, RolloutFactory, UserFactory

pytestmark = pytest.mark.django_db

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def fleet(db):
    DeviceFactory.create_batch(3)
    RolloutFactory(status=RolloutStatus.ACTIVE, current_ring="pilot")
    RolloutFactory(status=RolloutStatus.PAUSED, current_ring="ring_5")
    RolloutFactory(status=RolloutStatus.COMPLETED)


@pytest.mark.parametrize("accept", ["application/json", "*/*", None])
def test_it_answers_the_status_json_to_programs(fleet, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = Client().get("/", **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "name": "SafeRoll",
        "version": "1.0.0",
        "status": "running",
        "active_rollouts": 1,
        "total_devices": 3,
    }


def test_it_sends_anonymous_browsers_to_the_login_page(db):
    response = Client().get("/", HTTP_ACCEPT=BROWSER_ACCEPT)

    assert response.status_code == 302
    assert response["Location"].startswith("/login")


def test_it_shows_the_dashboard_to_a_signed_in_browser(db):
    client = Client()
    client.force_login(UserFactory(role="viewer"))

    response = client.get("/", HTTP_ACCEPT=BROWSER_ACCEPT)

    assert response.status_code == 200
    assert "text/html" in response["Content-Type"]
    assert b"Dashboard" in response.content


def test_it_is_healthy_when_the_database_answers_and_the_autopilot_is_recent(db):
    FleetState.load()
    FleetState.objects.filter(pk=1).update(autopilot_last_run=timezone.now())

    response = Client().get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"] == "ok"
    assert body["autopilot"]["stale"] is False


def test_it_says_degraded_when_the_autopilot_has_stopped_evaluating(db, settings):
    settings.SAFEROLL_AUTOPILOT_PERIOD_SECONDS = 10
    FleetState.load()
    FleetState.objects.filter(pk=1).update(autopilot_last_run=timezone.now() - dt.timedelta(minutes=5))

    response = Client().get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["autopilot"]["stale"] is True


def test_it_says_degraded_when_redis_is_unreachable(db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    FleetState.load()
    FleetState.objects.filter(pk=1).update(autopilot_last_run=timezone.now())

    body = Client().get("/health").json()

    assert body["status"] == "degraded"
    assert body["redis"] == "unreachable"


def test_it_answers_503_with_retry_after_when_the_database_is_down(db, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", unreachable)

    response = Client().get("/health")

    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "database": "unreachable"}
    assert response["Retry-After"] == "5"


def test_it_refuses_writes_on_the_system_endpoints(db):
    assert Client().post("/health").status_code == 405
    assert Client().post("/").status_code in (403, 405)
