"""Ring health and the per-minute series, read at an explicit `now`."""

import datetime as dt

import pytest

from telemetry.selectors import critically_unhealthy_devices, ring_health, ring_series
from tests.factories import DeviceFactory, HealthCheckFactory
from tests.telemetry.support import NOW

pytestmark = pytest.mark.django_db


def received(minutes_before_now: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes_before_now)


def test_it_gives_the_default_healthy_values_with_no_devices_for_an_empty_window():
    health = ring_health("pilot", now=NOW)

    assert (health.total_devices, health.crash_free_rate, health.boot_success_rate) == (0, 1.0, 1.0)
    assert health.median_latency_ms == 0


def test_it_averages_two_checks():
    HealthCheckFactory(crash_free=0.99, checkin_latency_ms=50, received_at=received(1))
    HealthCheckFactory(crash_free=0.98, checkin_latency_ms=60, received_at=received(1))

    health = ring_health("pilot", now=NOW)

    assert health.total_devices == 2
    assert health.crash_free_rate == pytest.approx(0.985)
    assert health.median_latency_ms == 55


def test_it_cuts_the_window_on_both_sides_of_now():
    HealthCheckFactory(crash_free=0.5, received_at=received(5.5))
    HealthCheckFactory(crash_free=0.99, received_at=received(4.5))
    HealthCheckFactory(crash_free=0.5, received_at=received(-1))

    health = ring_health("pilot", window_minutes=5, now=NOW)

    assert (health.total_devices, health.crash_free_rate) == (1, 0.99)


def test_it_judges_the_window_on_receive_time_not_the_devices_clock():
    HealthCheckFactory(received_at=received(1), device_time=received(61))
    HealthCheckFactory(received_at=received(61), device_time=received(1))

    assert ring_health("pilot", now=NOW).total_devices == 1


def test_it_aggregates_the_optional_kpis():
    HealthCheckFactory(availability=0.99, event_lag_ms=100, dropped_events=2, received_at=received(1))
    HealthCheckFactory(availability=0.97, event_lag_ms=300, dropped_events=0, received_at=received(1))
    HealthCheckFactory(received_at=received(1))

    health = ring_health("pilot", now=NOW)

    assert health.availability == pytest.approx(0.98)
    assert health.event_lag_ms == 200
    assert health.dropped_events == 1


def test_it_expects_every_device_of_the_ring():
    reporting, _silent = DeviceFactory.create_batch(2, ring="ring_5")
    DeviceFactory(ring="pilot")
    HealthCheckFactory(device=reporting, received_at=received(1))

    health = ring_health("ring_5", now=NOW)

    assert (health.total_devices, health.expected_devices, health.reporting_rate) == (1, 2, 0.5)


def test_it_charts_one_point_per_minute_oldest_first():
    points = ring_series(ring="pilot", minutes=10, now=NOW + dt.timedelta(seconds=30))

    assert len(points) == 10
    assert points[0].minute == NOW - dt.timedelta(minutes=9)
    assert points[-1].minute == NOW
    assert all(point.total_devices == 0 and point.crash_free_rate is None for point in points)


def test_it_aggregates_each_minute_on_its_own():
    now = NOW + dt.timedelta(seconds=30)
    slow = DeviceFactory()
    HealthCheckFactory(
        device=slow, crash_free=0.99, checkin_latency_ms=40, received_at=NOW - dt.timedelta(seconds=50)
    )
    HealthCheckFactory(crash_free=0.97, checkin_latency_ms=60, received_at=NOW - dt.timedelta(seconds=10))
    HealthCheckFactory(crash_free=0.90, boot_ok=False, checkin_latency_ms=900, received_at=NOW)
    HealthCheckFactory(device=slow, crash_free=0.5, received_at=NOW - dt.timedelta(minutes=20))

    points = {point.minute: point for point in ring_series(ring="pilot", minutes=10, now=now)}

    previous = points[NOW - dt.timedelta(minutes=1)]
    assert previous.total_devices == 2
    assert previous.crash_free_rate == pytest.approx(0.98)
    assert previous.boot_success_rate == 1.0
    assert previous.median_latency_ms == 50
    current = points[NOW]
    assert (current.total_devices, current.boot_success_rate, current.median_latency_ms) == (1, 0.0, 900)
    assert points[NOW - dt.timedelta(minutes=2)].crash_free_rate is None


def test_it_charts_only_the_version_asked_for():
    HealthCheckFactory(version="v2.1", crash_free=0.99, received_at=received(1))
    HealthCheckFactory(version="v2.0", crash_free=0.5, received_at=received(1))

    points = ring_series(ring="pilot", version="v2.1", minutes=10, now=NOW)

    assert sum(point.total_devices for point in points) == 1


def test_it_judges_each_device_on_its_own_newest_minute_of_checks_for_the_fleet():
    healthy, crashing, failing_boots = DeviceFactory(), DeviceFactory(), DeviceFactory()
    HealthCheckFactory(device=healthy, received_at=received(1))
    HealthCheckFactory(device=crashing, crash_free=0.80, received_at=received(1))
    # One boot of two failed: a success share of 0.5, however healthy the other check is.
    HealthCheckFactory(device=failing_boots, boot_ok=False, received_at=received(1))
    HealthCheckFactory(device=failing_boots, received_at=received(2))
    HealthCheckFactory(crash_free=0.10, received_at=received(6))  # outside the window

    counts = critically_unhealthy_devices(window_minutes=5, now=NOW)

    assert counts == (3, 2)
