"""GET /api/health/ring/{ring}/series: per-minute points for the health chart."""

import datetime as dt

import pytest
from django.utils import timezone

from tests.factories import HealthCheckFactory

pytestmark = pytest.mark.django_db


def url(ring: str = "pilot") -> str:
    return f"/api/health/ring/{ring}/series"


def test_it_answers_a_point_for_every_minute(viewer):
    HealthCheckFactory(
        crash_free=0.99, checkin_latency_ms=50, received_at=timezone.now() - dt.timedelta(minutes=3)
    )

    body = viewer.get(url(), {"minutes": 15}).json()

    assert (body["ring"], body["minutes"], len(body["points"])) == ("pilot", 15, 15)
    assert set(body["points"][0]) == {
        "minute",
        "total_devices",
        "crash_free_rate",
        "boot_success_rate",
        "median_latency_ms",
        "metrics",
    }
    reported = [point for point in body["points"] if point["total_devices"]]
    assert len(reported) == 1
    assert (reported[0]["crash_free_rate"], reported[0]["median_latency_ms"]) == (0.99, 50.0)
    minutes = [dt.datetime.fromisoformat(point["minute"]) for point in body["points"]]
    assert minutes == sorted(minutes)


def test_it_charts_thirty_minutes_by_default(viewer):
    assert len(viewer.get(url()).json()["points"]) == 30


@pytest.mark.parametrize("minutes", ["9", "61", "soon"])
def test_it_refuses_a_span_outside_ten_to_sixty_minutes(viewer, minutes):
    response = viewer.get(url(), {"minutes": minutes})

    assert response.status_code == 400
    assert response.json()["fields"]["minutes"][0]


def test_it_answers_404_for_an_unknown_ring(viewer):
    assert viewer.get(url("nowhere")).status_code == 404


def test_it_refuses_anonymous_readers(api):
    assert api.get(url()).status_code == 401
