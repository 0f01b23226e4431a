"""Custom KPIs: a health check's `metrics` {name: number}, validated, stored and averaged."""

import datetime as dt

import pytest
from django.db import connection

from telemetry.models import HealthCheck
from telemetry.selectors import device_health, ring_health, ring_series
from tests.factories import DeviceFactory, HealthCheckFactory
from tests.telemetry.support import NOW, check, device_client

pytestmark = pytest.mark.django_db


def received(minutes_before_now: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes_before_now)


# --- ingestion ---------------------------------------------------------------------------------


def test_it_stores_the_metrics_of_a_single_check():
    device = DeviceFactory()

    response = device_client(device).post(
        "/api/health",
        check(device.device_id, metrics={"disk_free_pct": 61.5, "crash_loops": 0}),
        format="json",
    )

    assert response.status_code == 200
    assert HealthCheck.objects.get(device=device).metrics == {"disk_free_pct": 61.5, "crash_loops": 0.0}


def test_a_check_without_metrics_stores_an_empty_object():
    device = DeviceFactory()

    device_client(device).post("/api/health", check(device.device_id), format="json")

    assert HealthCheck.objects.get(device=device).metrics == {}


def test_it_stores_the_metrics_of_a_batch_through_copy():
    assert connection.vendor == "postgresql"
    device = DeviceFactory()
    checks = [
        check(device.device_id, timestamp="2025-11-18T10:30:00Z", metrics={"temperature_c": 41.25}),
        check(device.device_id, timestamp="2025-11-18T10:30:05Z"),
        check(device.device_id, timestamp="2025-11-18T10:30:10Z", metrics={"label_quote": 1, "b": -2.5e-3}),
    ]

    response = device_client(device).post("/api/health/batch", {"checks": checks}, format="json")

    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    stored = list(
        HealthCheck.objects.filter(device=device).order_by("device_time").values_list("metrics", flat=True)
    )
    assert stored == [{"temperature_c": 41.25}, {}, {"label_quote": 1.0, "b": -0.0025}]


def test_a_batch_lists_a_check_with_bad_metrics_and_stores_the_others():
    device = DeviceFactory()
    checks = [
        check(device.device_id, timestamp="2025-11-18T10:30:00Z", metrics={"disk_free_pct": "full"}),
        check(device.device_id, timestamp="2025-11-18T10:30:05Z", metrics={"disk_free_pct": 50}),
    ]

    body = device_client(device).post("/api/health/batch", checks, format="json").json()

    assert body["accepted"] == 1
    assert body["rejected"][0]["index"] == 0
    assert body["rejected"][0]["errors"]["metrics"] == [
        "The metric 'disk_free_pct' must be a JSON number, not a string."
    ]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ([1, 2], "Must be a JSON object of {name: number}."),
        ("disk=5", "Must be a JSON object of {name: number}."),
        ({"disk": True}, "The metric 'disk' must be a JSON number, not a boolean."),
        ({"disk": "5"}, "The metric 'disk' must be a JSON number, not a string."),
        ({"disk": None}, "The metric 'disk' must be a JSON number, not null."),
        ({"disk": {"free": 5}}, "The metric 'disk' must be a JSON number, not an object."),
        ({"disk": [5]}, "The metric 'disk' must be a JSON number, not a list."),
        ({"disk": 10**400}, "The metric 'disk' must be a finite number."),
        ({f"m{index}": index for index in range(21)}, "At most 20 metrics per check; this one has 21."),
        ({"d" * 41: 1}, "is longer than 40 characters"),
        ({"Disk": 1}, "The metric name 'Disk' is not allowed"),
        ({"2disk": 1}, "The metric name '2disk' is not allowed"),
        ({"disk-free": 1}, "The metric name 'disk-free' is not allowed"),
        ({"": 1}, "The metric name '' is not allowed"),
        ({"crash_free": 0.5}, "The metric name 'crash_free' is a built-in field; choose another name."),
        ({"median_latency_ms": 5}, "The metric name 'median_latency_ms' is a built-in field"),
    ],
)
def test_bad_metrics_are_a_400_naming_the_problem(metrics, message):
    device = DeviceFactory()

    response = device_client(device).post(
        "/api/health", check(device.device_id, metrics=metrics), format="json"
    )

    assert response.status_code == 400
    assert message in response.json()["fields"]["metrics"][0]
    assert not HealthCheck.objects.exists()


def test_nan_and_infinity_are_refused_before_the_check_is_read():
    device = DeviceFactory()
    body = '{"device_id": "%s", "ring": "pilot", "boot_ok": true, "crash_free": 1, "checkin_latency_ms": 5, '
    for value in ("NaN", "Infinity", "-Infinity"):
        response = device_client(device).post(
            "/api/health",
            (body % device.device_id) + '"metrics": {"disk": ' + value + "}}",
            content_type="application/json",
        )
        assert response.status_code == 400, value
    assert not HealthCheck.objects.exists()


def test_twenty_metrics_of_forty_characters_are_accepted():
    device = DeviceFactory()
    metrics = {f"m{index:02d}" + "x" * 37: index for index in range(20)}

    response = device_client(device).post(
        "/api/health", check(device.device_id, metrics=metrics), format="json"
    )

    assert response.status_code == 200
    assert len(HealthCheck.objects.get(device=device).metrics) == 20


# --- aggregation ---------------------------------------------------------------------------------


def test_it_averages_a_metric_over_the_checks_that_carry_it():
    HealthCheckFactory(metrics={"disk_free_pct": 60.0, "temperature_c": 40.0}, received_at=received(1))
    HealthCheckFactory(metrics={"disk_free_pct": 50.0}, received_at=received(2))
    HealthCheckFactory(received_at=received(1))
    HealthCheckFactory(metrics={"disk_free_pct": 0.0}, received_at=received(6))

    health = ring_health("pilot", now=NOW, metrics=["disk_free_pct", "temperature_c", "crash_loops"])

    assert health.checks == 3
    assert health.metrics == {"disk_free_pct": pytest.approx(55.0), "temperature_c": pytest.approx(40.0)}
    assert "crash_loops" not in health.metrics


def test_it_averages_only_the_metrics_asked_for():
    HealthCheckFactory(metrics={"disk_free_pct": 60.0, "temperature_c": 40.0}, received_at=received(1))

    assert ring_health("pilot", now=NOW).metrics == {}
    assert ring_health("pilot", now=NOW, metrics=["temperature_c"]).metrics == {"temperature_c": 40.0}


def test_an_empty_window_has_no_metric():
    assert ring_health("pilot", now=NOW, metrics=["disk_free_pct"]).metrics == {}


def test_a_device_health_averages_its_own_metrics():
    mine = HealthCheckFactory(metrics={"crash_loops": 2.0}, received_at=received(1))
    HealthCheckFactory(metrics={"crash_loops": 0.0}, received_at=received(1))

    health = device_health(mine.device, window_minutes=5, now=NOW, metrics=["crash_loops"])

    assert health.metrics == {"crash_loops": 2.0}


def test_the_series_carries_each_minutes_mean_of_a_metric():
    now = NOW + dt.timedelta(seconds=30)
    HealthCheckFactory(metrics={"temperature_c": 40.0}, received_at=NOW - dt.timedelta(minutes=2))
    HealthCheckFactory(metrics={"temperature_c": 50.0}, received_at=NOW - dt.timedelta(minutes=2))
    HealthCheckFactory(received_at=NOW - dt.timedelta(minutes=1))

    points = {
        point.minute: point
        for point in ring_series(ring="pilot", minutes=10, now=now, metrics=["temperature_c"])
    }

    assert points[NOW - dt.timedelta(minutes=2)].metrics == {"temperature_c": 45.0}
    assert points[NOW - dt.timedelta(minutes=1)].metrics == {}
    assert points[NOW].metrics == {}


def test_the_ring_health_api_averages_the_metrics_asked_for(admin_client):
    DeviceFactory(ring="pilot")
    HealthCheckFactory(metrics={"disk_free_pct": 61.23456}, received_at=dt.datetime.now(dt.UTC))

    body = admin_client.get("/api/health/ring/pilot?metrics=disk_free_pct,crash_loops").json()

    assert body["metrics"] == {"disk_free_pct": 61.2346}


def test_the_ring_health_api_refuses_a_bad_metric_name(admin_client):
    DeviceFactory(ring="pilot")

    response = admin_client.get("/api/health/ring/pilot?metrics=Disk")

    assert response.status_code == 400
    assert "'Disk' is not allowed" in response.json()["fields"]["metrics"][0]


def test_the_ring_series_api_carries_the_metrics_asked_for(admin_client):
    DeviceFactory(ring="pilot")
    HealthCheckFactory(metrics={"temperature_c": 42.0}, received_at=dt.datetime.now(dt.UTC))

    body = admin_client.get("/api/health/ring/pilot/series?minutes=10&metrics=temperature_c").json()

    assert body["points"][-1]["metrics"] == {"temperature_c": 42.0}
    assert body["points"][0]["metrics"] == {}
