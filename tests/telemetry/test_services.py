"""health_ingest and health_ingest_batch, at an explicit `now`."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.choices import DeviceStatus
from telemetry.models import HealthCheck
from telemetry.services import HealthReport, health_ingest, health_ingest_batch
from tests.factories import DeviceFactory
from tests.telemetry.support import NOW

pytestmark = pytest.mark.django_db


def report(**overrides) -> HealthReport:
    fields = {"boot_ok": True, "crash_free": 0.995, "checkin_latency_ms": 45, **overrides}
    return HealthReport(**fields)


def seconds_ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def test_it_stores_received_at_and_device_time_apart():
    device = DeviceFactory(ring="ring_5", app_version="v2.0")
    skewed = NOW - dt.timedelta(hours=1)

    health_ingest(device=device, report=report(timestamp=skewed, version="v2.1"), now=NOW)

    stored = HealthCheck.objects.get()
    assert (stored.received_at, stored.device_time) == (NOW, skewed)
    assert (stored.ring, stored.version) == ("ring_5", "v2.1")


def test_it_refreshes_a_heartbeat_older_than_the_resolution(settings):
    settings.SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS = 15
    device = DeviceFactory(last_heartbeat=seconds_ago(16))

    health_ingest(device=device, report=report(), now=NOW)

    device.refresh_from_db()
    assert device.last_heartbeat == NOW


def test_it_spares_the_write_for_a_heartbeat_within_the_resolution(settings):
    settings.SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS = 15
    device = DeviceFactory(last_heartbeat=seconds_ago(14), app_version="v2.1")

    with CaptureQueriesContext(connection) as queries:
        health_ingest(device=device, report=report(version="v2.1"), now=NOW)

    assert not [query for query in queries if query["sql"].startswith('UPDATE "devices_device"')]
    device.refresh_from_db()
    assert device.last_heartbeat == seconds_ago(14)


def test_it_never_moves_a_heartbeat_backwards():
    later = NOW + dt.timedelta(seconds=5)
    device = DeviceFactory(last_heartbeat=later, status=DeviceStatus.OFFLINE)
    # Another request, ahead of this one, already wrote a later heartbeat.
    stale_copy = DeviceFactory.build(pk=device.pk, last_heartbeat=None, status=DeviceStatus.OFFLINE)

    health_ingest(device=stale_copy, report=report(), now=NOW)

    device.refresh_from_db()
    assert device.last_heartbeat == later
    assert device.status == DeviceStatus.ONLINE


def test_it_brings_an_offline_device_back_online_and_clears_the_offline_reason():
    device = DeviceFactory(status=DeviceStatus.OFFLINE, status_reason="No heartbeat for 5 minutes.")

    health_ingest(device=device, report=report(), now=NOW)

    device.refresh_from_db()
    assert (device.status, device.status_reason) == (DeviceStatus.ONLINE, "")


def test_it_never_clears_a_flag_for_investigation_even_when_loaded_as_offline():
    device = DeviceFactory(status=DeviceStatus.INVESTIGATE, status_reason="Crash loop")
    # Loaded before an operator flagged it.
    stale_copy = DeviceFactory.build(pk=device.pk, status=DeviceStatus.OFFLINE, last_heartbeat=None)

    health_ingest(device=stale_copy, report=report(), now=NOW)

    device.refresh_from_db()
    assert (device.status, device.status_reason) == (DeviceStatus.INVESTIGATE, "Crash loop")


def test_it_records_a_version_change_even_with_a_fresh_heartbeat():
    device = DeviceFactory(last_heartbeat=NOW, app_version="v2.0")

    health_ingest(device=device, report=report(version="v2.1"), now=NOW)

    device.refresh_from_db()
    assert device.app_version == "v2.1"


def test_it_keeps_the_known_version_when_the_check_names_none():
    device = DeviceFactory(last_heartbeat=seconds_ago(60), app_version="v2.0")

    health_ingest(device=device, report=report(), now=NOW)

    device.refresh_from_db()
    assert device.app_version == "v2.0"
    assert HealthCheck.objects.get().version == "v2.0"


def test_it_stores_a_retried_check_once():
    device = DeviceFactory()
    retried = report(timestamp=seconds_ago(30))

    first = health_ingest(device=device, report=retried, now=NOW)
    retry = health_ingest(device=device, report=retried, now=NOW + dt.timedelta(seconds=2))

    assert HealthCheck.objects.count() == 1
    assert (first, retry) == (True, False)


def test_it_counts_a_batch_accepted_and_duplicate_checks():
    first, second = DeviceFactory.create_batch(2)
    health_ingest(device=first, report=report(timestamp=seconds_ago(60)), now=NOW)

    result = health_ingest_batch(
        checks=[
            (first, report(timestamp=seconds_ago(60))),
            (first, report(timestamp=seconds_ago(30))),
            (second, report(timestamp=seconds_ago(30))),
            (second, report(timestamp=seconds_ago(30))),
        ],
        now=NOW,
    )

    assert (result.accepted, result.duplicates) == (2, 2)
    assert HealthCheck.objects.count() == 3


def test_it_runs_two_batches_in_one_transaction():
    device = DeviceFactory()

    health_ingest_batch(checks=[(device, report(timestamp=seconds_ago(2)))], now=NOW)
    result = health_ingest_batch(checks=[(device, report(timestamp=seconds_ago(1)))], now=NOW)

    assert result.accepted == 1
    assert HealthCheck.objects.count() == 2


def test_it_stores_every_field_of_a_batch_check():
    device = DeviceFactory(ring="ring_25", app_version="v2.0")

    health_ingest_batch(
        checks=[
            (
                device,
                report(
                    boot_ok=False,
                    crash_free=0.5,
                    checkin_latency_ms=1234,
                    version="v2.1",
                    timestamp=seconds_ago(90),
                    availability=0.9,
                    event_lag_ms=77,
                    dropped_events=4,
                    metrics={"disk_free_pct": 12.5},
                ),
            )
        ],
        now=NOW,
    )

    stored = HealthCheck.objects.values().get()
    assert {key: value for key, value in stored.items() if key != "id"} == {
        "device_id": device.pk,
        "ring": "ring_25",
        "version": "v2.1",
        "boot_ok": False,
        "crash_free": 0.5,
        "checkin_latency_ms": 1234,
        "availability": 0.9,
        "event_lag_ms": 77,
        "dropped_events": 4,
        "metrics": {"disk_free_pct": 12.5},
        "device_time": seconds_ago(90),
        "received_at": NOW,
    }


def test_it_refreshes_only_the_devices_of_a_batch_that_need_it(settings):
    settings.SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS = 15
    fresh = DeviceFactory(last_heartbeat=seconds_ago(5), app_version="v2.1")
    stale = DeviceFactory(last_heartbeat=seconds_ago(600), app_version="v2.1")
    upgraded = DeviceFactory(last_heartbeat=seconds_ago(5), app_version="v2.0")

    health_ingest_batch(
        checks=[(device, report(version="v2.1")) for device in (fresh, stale, upgraded)], now=NOW
    )

    for device in (fresh, stale, upgraded):
        device.refresh_from_db()
    assert fresh.last_heartbeat == seconds_ago(5)
    assert stale.last_heartbeat == NOW
    assert (upgraded.app_version, upgraded.last_heartbeat) == ("v2.1", NOW)
