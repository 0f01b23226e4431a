"""GET /api/health/ring/{ring}: the aggregated health of a ring (000 §5.1, §6.4)."""

import datetime as dt

import pytest
from django.utils import timezone

from tests.conftest import client_for
from tests.factories import DeviceFactory, HealthCheckFactory, UserFactory
from tests.telemetry.support import OMIT, check, device_client

pytestmark = pytest.mark.django_db


def url(ring: str = "pilot") -> str:
    return f"/api/health/ring/{ring}"


def minutes_ago(minutes: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(minutes=minutes)


def test_it_answers_the_default_healthy_values_for_an_empty_window(viewer):
    response = viewer.get(url())

    assert response.status_code == 200
    assert response.json() == {
        "ring": "pilot",
        "total_devices": 0,
        "crash_free_rate": 1.0,
        "boot_success_rate": 1.0,
        "median_latency_ms": 0.0,
        "window_minutes": 5,
        "expected_devices": 0,
        "reporting_rate": None,
        "metrics": {},
    }


def test_it_averages_the_crash_free_rate_of_the_checks(viewer):
    for crash_free, latency in [(0.99, 50), (0.98, 60)]:
        HealthCheckFactory(crash_free=crash_free, checkin_latency_ms=latency, received_at=minutes_ago(1))

    body = viewer.get(url()).json()

    assert body["total_devices"] == 2
    assert body["crash_free_rate"] == 0.985
    assert body["boot_success_rate"] == 1.0
    assert body["median_latency_ms"] == 55.0


def test_it_counts_boot_success_as_the_share_of_checks_that_booted(viewer):
    for boot_ok in [True, True, True, False]:
        HealthCheckFactory(boot_ok=boot_ok, received_at=minutes_ago(1))

    assert viewer.get(url()).json()["boot_success_rate"] == 0.75


def test_it_takes_the_median_latency_not_the_mean(viewer):
    for latency in [40, 50, 5000]:
        HealthCheckFactory(checkin_latency_ms=latency, received_at=minutes_ago(1))

    assert viewer.get(url()).json()["median_latency_ms"] == 50.0


def test_it_counts_a_device_that_reported_twice_once(viewer):
    device = DeviceFactory()
    HealthCheckFactory(device=device, received_at=minutes_ago(1))
    HealthCheckFactory(device=device, received_at=minutes_ago(2))

    body = viewer.get(url()).json()

    assert body["total_devices"] == 1
    assert body["expected_devices"] == 1
    assert body["reporting_rate"] == 1.0


def test_it_leaves_out_checks_received_before_the_window(viewer):
    HealthCheckFactory(crash_free=0.90, received_at=minutes_ago(6))
    HealthCheckFactory(crash_free=0.99, received_at=minutes_ago(4))

    five = viewer.get(url()).json()
    ten = viewer.get(url(), {"window_minutes": 10}).json()

    assert (five["total_devices"], five["crash_free_rate"]) == (1, 0.99)
    assert (ten["total_devices"], ten["crash_free_rate"], ten["window_minutes"]) == (2, 0.945, 10)


def test_it_leaves_out_the_checks_of_other_rings(viewer):
    HealthCheckFactory(device=DeviceFactory(ring="pilot"), crash_free=0.99, received_at=minutes_ago(1))
    HealthCheckFactory(device=DeviceFactory(ring="ring_5"), crash_free=0.50, received_at=minutes_ago(1))

    body = viewer.get(url("pilot")).json()

    assert (body["total_devices"], body["crash_free_rate"]) == (1, 0.99)


def test_it_counts_a_device_whose_clock_is_an_hour_off(viewer):
    device = DeviceFactory()
    skewed = (timezone.now() - dt.timedelta(hours=1)).isoformat()

    device_client(device).post("/api/health", check(device.device_id, timestamp=skewed), format="json")
    body = viewer.get(url()).json()

    assert body["total_devices"] == 1


def test_it_counts_a_check_sent_without_a_timestamp(viewer):
    device = DeviceFactory()

    device_client(device).post("/api/health", check(device.device_id, timestamp=OMIT), format="json")

    assert viewer.get(url()).json()["total_devices"] == 1


def test_it_filters_checks_and_expected_devices_by_version(viewer):
    new = DeviceFactory(app_version="v2.1")
    DeviceFactory(app_version="v2.1")
    old = DeviceFactory(app_version="v2.0")
    HealthCheckFactory(device=new, version="v2.1", crash_free=0.97, received_at=minutes_ago(1))
    HealthCheckFactory(device=old, version="v2.0", crash_free=0.999, received_at=minutes_ago(1))

    body = viewer.get(url(), {"version": "v2.1"}).json()

    assert (body["total_devices"], body["crash_free_rate"]) == (1, 0.97)
    assert (body["expected_devices"], body["reporting_rate"]) == (2, 0.5)


def test_it_shows_silent_devices_in_the_reporting_rate(viewer):
    devices = DeviceFactory.create_batch(4, ring="ring_5")
    for device in devices[:3]:
        HealthCheckFactory(device=device, received_at=minutes_ago(1))

    body = viewer.get(url("ring_5")).json()

    assert (body["total_devices"], body["expected_devices"], body["reporting_rate"]) == (3, 4, 0.75)


def test_it_reports_a_reporting_rate_of_zero_for_a_silent_ring(viewer):
    DeviceFactory.create_batch(3, ring="ring_25")

    body = viewer.get(url("ring_25")).json()

    assert (body["total_devices"], body["expected_devices"], body["reporting_rate"]) == (0, 3, 0.0)


def test_it_knows_a_ring_that_only_devices_are_in(viewer):
    DeviceFactory(ring="lab")

    assert viewer.get(url("lab")).status_code == 200


def test_it_answers_404_for_a_ring_nobody_is_in(viewer):
    response = viewer.get(url("ring_42"))

    assert response.status_code == 404
    assert response.json() == {"error": "There is no ring named 'ring_42'."}


@pytest.mark.parametrize("ring", ["%00", "r" * 21, "%ED%A0%80"])
def test_it_answers_404_for_a_name_no_ring_can_have(viewer, ring):
    response = viewer.get(url(ring))

    assert response.status_code == 404
    assert response.json()["error"]


@pytest.mark.parametrize("version", ["v\x00", "v" * 51])
def test_it_refuses_a_version_no_check_can_have(viewer, version):
    response = viewer.get(url(), {"version": version})

    assert response.status_code == 400
    assert response.json()["fields"]["version"][0]


@pytest.mark.parametrize("window", ["0", "61", "-5", "five", "2.5"])
def test_it_refuses_a_window_outside_one_to_sixty_minutes(viewer, window):
    response = viewer.get(url(), {"window_minutes": window})

    assert response.status_code == 400
    assert response.json()["fields"]["window_minutes"][0]


def test_it_refuses_anonymous_readers(api):
    assert api.get(url()).status_code == 401


def test_it_refuses_a_device_credential_as_a_reader():
    device = DeviceFactory()

    assert device_client(device).get(url()).status_code == 401


def test_it_refuses_a_person_without_a_role():
    response = client_for(UserFactory(username="nobody")).get(url())

    assert response.status_code == 403
