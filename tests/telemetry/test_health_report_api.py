"""POST /api/health: one check from a device, or from a gateway on a device's behalf."""

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.choices import DeviceStatus
from telemetry.models import HealthCheck
from tests.factories import DeviceFactory
from tests.telemetry.support import OMIT, check, device_client

URL = "/api/health"
pytestmark = pytest.mark.django_db


def test_it_stores_a_check_from_the_device_and_answers_ok():
    device = DeviceFactory(device_id="tv-0001")
    before = timezone.now()

    response = device_client(device).post(
        URL, check("tv-0001", availability=0.999, event_lag_ms=120, dropped_events=3), format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    stored = HealthCheck.objects.get()
    assert stored.device == device
    assert (stored.version, stored.boot_ok, stored.crash_free, stored.checkin_latency_ms) == (
        "v2.1",
        True,
        0.995,
        45,
    )
    assert (stored.availability, stored.event_lag_ms, stored.dropped_events) == (0.999, 120, 3)
    assert stored.device_time == dt.datetime(2025, 11, 18, 10, 30, tzinfo=dt.UTC)
    assert before <= stored.received_at <= timezone.now()


def test_it_stores_the_ring_the_server_knows_whatever_the_payload_says():
    device = DeviceFactory(ring="ring_25")

    device_client(device).post(URL, check(device.device_id, ring="pilot"), format="json")

    assert HealthCheck.objects.get().ring == "ring_25"


def test_it_stores_the_devices_known_version_when_the_check_names_none():
    device = DeviceFactory(app_version="v2.0")

    device_client(device).post(URL, check(device.device_id, version=OMIT), format="json")

    assert HealthCheck.objects.get().version == "v2.0"


def test_it_stamps_a_check_without_timestamp_with_the_servers_time():
    device = DeviceFactory()

    device_client(device).post(URL, check(device.device_id, timestamp=OMIT), format="json")

    stored = HealthCheck.objects.get()
    assert stored.device_time == stored.received_at


def test_it_stores_a_retried_check_once_and_still_answers_ok():
    device = DeviceFactory()
    client = device_client(device)

    first = client.post(URL, check(device.device_id), format="json")
    retry = client.post(URL, check(device.device_id), format="json")

    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.json() == {"status": "ok"}
    assert HealthCheck.objects.count() == 1


def test_it_writes_a_check_and_its_rollup_and_leaves_a_fresh_device_alone():
    device = DeviceFactory(app_version="v2.1", status=DeviceStatus.ONLINE, last_heartbeat=timezone.now())
    device_client(device).post(URL, check(device.device_id, timestamp="2025-11-18T10:00:00Z"), format="json")

    with CaptureQueriesContext(connection) as queries:
        response = device_client(device).post(URL, check(device.device_id), format="json")

    assert response.status_code == 200
    writes = [q["sql"] for q in queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))]
    tables = [sql.split('"')[1] for sql in writes]
    # One insert of the check; the rest are the rollup's upserts (no device row is written).
    assert tables.count("telemetry_healthcheck") == 1
    assert set(tables) <= {
        "telemetry_healthcheck",
        "telemetry_healthminute",
        "telemetry_healthminutevalue",
        "telemetry_devicecheckstate",
    }


def test_it_refreshes_a_stale_heartbeat_brings_the_device_online_and_records_its_version():
    stale = timezone.now() - dt.timedelta(minutes=10)
    device = DeviceFactory(
        app_version="v2.0", status=DeviceStatus.OFFLINE, status_reason="No heartbeat", last_heartbeat=stale
    )

    device_client(device).post(URL, check(device.device_id, version="v2.1"), format="json")

    device.refresh_from_db()
    assert device.last_heartbeat > stale
    assert device.status == DeviceStatus.ONLINE
    assert device.status_reason == ""
    assert device.app_version == "v2.1"


def test_it_keeps_a_device_flagged_for_investigation_flagged():
    device = DeviceFactory(status=DeviceStatus.INVESTIGATE, last_heartbeat=None)

    device_client(device).post(URL, check(device.device_id), format="json")

    device.refresh_from_db()
    assert device.status == DeviceStatus.INVESTIGATE
    assert device.last_heartbeat is not None


def test_it_refuses_a_device_reporting_for_another_device():
    device = DeviceFactory(device_id="tv-0001")
    DeviceFactory(device_id="tv-0002")

    response = device_client(device).post(URL, check("tv-0002"), format="json")

    assert response.status_code == 403
    assert "only report its own health" in response.json()["error"]
    assert not HealthCheck.objects.exists()


def test_it_refuses_an_anonymous_report(api):
    device = DeviceFactory()

    response = api.post(URL, check(device.device_id), format="json")

    assert response.status_code == 401
    assert response.json()["error"]
    assert not HealthCheck.objects.exists()


def test_it_refuses_an_unknown_device_token(api):
    device = DeviceFactory()

    response = api.post(
        URL, check(device.device_id), format="json", HTTP_AUTHORIZATION="Device not-a-real-token"
    )

    assert response.status_code == 401
    assert "Unknown or revoked" in response.json()["error"]


def test_it_refuses_a_revoked_device_token():
    device = DeviceFactory()
    client = device_client(device)
    device.token_hash = None
    device.save(update_fields=["token_hash"])

    response = client.post(URL, check(device.device_id), format="json")

    assert response.status_code == 401
    assert not HealthCheck.objects.exists()


def test_it_lets_a_gateway_report_for_any_enrolled_device(gateway):
    device = DeviceFactory(ring="ring_5")

    response = gateway.post(URL, check(device.device_id), format="json")

    assert response.status_code == 200
    assert HealthCheck.objects.get().device == device


def test_it_refuses_a_gateway_report_for_an_unknown_device(gateway):
    response = gateway.post(URL, check("ghost-0001"), format="json")

    assert response.status_code == 400
    assert response.json()["fields"]["device_id"] == ["No device with this id is enrolled."]


def test_it_refuses_a_viewer_who_may_not_report(viewer):
    device = DeviceFactory()

    response = viewer.post(URL, check(device.device_id), format="json")

    assert response.status_code == 403
    assert response.json()["error"]
    assert not HealthCheck.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("device_id", OMIT, id="device_id missing"),
        pytest.param("ring", OMIT, id="ring missing"),
        pytest.param("boot_ok", OMIT, id="boot_ok missing"),
        pytest.param("crash_free", OMIT, id="crash_free missing"),
        pytest.param("checkin_latency_ms", OMIT, id="latency missing"),
        pytest.param("crash_free", "high", id="crash_free a word"),
        pytest.param("crash_free", "0.99", id="crash_free a numeric string"),
        pytest.param("crash_free", True, id="crash_free a boolean"),
        pytest.param("crash_free", 1.5, id="crash_free above 1"),
        pytest.param("crash_free", -0.1, id="crash_free below 0"),
        pytest.param("crash_free", None, id="crash_free null"),
        pytest.param("boot_ok", "maybe", id="boot_ok a word"),
        pytest.param("boot_ok", "true", id="boot_ok a string"),
        pytest.param("boot_ok", 1, id="boot_ok a number"),
        pytest.param("checkin_latency_ms", -1, id="latency negative"),
        pytest.param("checkin_latency_ms", "45", id="latency a string"),
        pytest.param("checkin_latency_ms", 45.5, id="latency a fraction"),
        pytest.param("checkin_latency_ms", 2**31, id="latency beyond the column"),
        pytest.param("timestamp", "yesterday", id="timestamp a word"),
        pytest.param("timestamp", "2025-13-45T99:00:00Z", id="timestamp impossible"),
        pytest.param("timestamp", 1763461800, id="timestamp epoch seconds"),
        pytest.param("timestamp", "0001-01-01T00:00:00+01:00", id="timestamp out of range"),
        pytest.param("device_id", "d" * 51, id="device_id longer than 50"),
        pytest.param("device_id", 42, id="device_id a number"),
        pytest.param("device_id", "", id="device_id blank"),
        pytest.param("device_id", "tv\x00", id="device_id with a NUL"),
        pytest.param("device_id", "tv-\ud800", id="device_id with a lone surrogate"),
        pytest.param("ring", ["pilot"], id="ring a list"),
        pytest.param("version", "v" * 51, id="version longer than 50"),
        pytest.param("availability", 2, id="availability above 1"),
        pytest.param("crash_free", 10**400, id="crash_free an integer no float holds"),
        pytest.param("event_lag_ms", -5, id="event lag negative"),
        pytest.param("dropped_events", "many", id="dropped events a word"),
    ],
)
def test_it_refuses_an_invalid_field_with_a_message_for_that_field(field, value):
    device = DeviceFactory()

    # json.dumps escapes what the test client's renderer cannot write (a lone surrogate).
    body = json.dumps(check(device.device_id, **{field: value}))
    response = device_client(device).post(URL, body, content_type="application/json")

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Invalid input."
    assert body["fields"][field][0]
    assert not HealthCheck.objects.exists()


def test_it_lists_every_invalid_field_at_once():
    device = DeviceFactory()

    response = device_client(device).post(
        URL, check(device.device_id, crash_free="high", boot_ok="maybe", checkin_latency_ms=-1), format="json"
    )

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"crash_free", "boot_ok", "checkin_latency_ms"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"device_id": "tv-0001", ', id="truncated JSON"),
        pytest.param("not json at all", id="not JSON"),
        pytest.param('{"device_id": "x", "crash_free": NaN}', id="NaN is not JSON"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="nested too deeply"),
    ],
)
def test_it_refuses_a_malformed_body_with_a_message(body):
    device = DeviceFactory()

    response = device_client(device).post(URL, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("Malformed request body")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("", "fields", id="empty body"),
        pytest.param("[]", "error", id="a list"),
        pytest.param('"a check"', "error", id="a string"),
    ],
)
def test_it_refuses_a_body_that_is_not_a_check(body, expected):
    device = DeviceFactory()

    response = device_client(device).post(URL, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()[expected]
    assert not HealthCheck.objects.exists()


def test_it_refuses_a_form_encoded_body():
    device = DeviceFactory()

    response = device_client(device).post(URL, check(device.device_id, timestamp=OMIT))

    assert response.status_code == 415
    assert "Unsupported media type" in response.json()["error"]
