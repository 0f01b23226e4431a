"""POST /api/health/batch: many checks in one request, each accepted or rejected on its own."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.choices import DeviceStatus
from telemetry.models import HealthCheck
from tests.factories import DeviceFactory
from tests.telemetry.support import check, device_client

URL = "/api/health/batch"
pytestmark = pytest.mark.django_db


def at(minute: int) -> str:
    return f"2025-11-18T10:{minute:02d}:00Z"


def test_it_stores_every_valid_check_of_a_wrapped_batch():
    device = DeviceFactory()
    checks = [check(device.device_id, timestamp=at(minute)) for minute in range(3)]

    response = device_client(device).post(URL, {"checks": checks}, format="json")

    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert HealthCheck.objects.filter(device=device).count() == 3


def test_it_accepts_a_bare_list_of_checks():
    device = DeviceFactory()

    response = device_client(device).post(
        URL,
        [check(device.device_id, timestamp=at(0)), check(device.device_id, timestamp=at(1))],
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["accepted"] == 2


def test_it_stores_the_valid_checks_and_lists_the_invalid_ones():
    device = DeviceFactory(device_id="tv-0001")
    checks = [
        check("tv-0001", timestamp=at(0)),
        check("tv-0001", timestamp=at(1), crash_free="high"),
        check("tv-0001", timestamp=at(2)),
        check("tv-0001", timestamp=at(3), boot_ok="maybe", checkin_latency_ms=-1),
        7,
    ]

    response = device_client(device).post(URL, {"checks": checks}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert [entry["index"] for entry in body["rejected"]] == [1, 3, 4]
    assert body["rejected"][0]["device_id"] == "tv-0001"
    assert list(body["rejected"][0]["errors"]) == ["crash_free"]
    assert set(body["rejected"][1]["errors"]) == {"boot_ok", "checkin_latency_ms"}
    assert body["rejected"][2]["device_id"] is None
    assert body["rejected"][2]["errors"]["non_field_errors"]
    stored = HealthCheck.objects.values_list("device_time", flat=True)
    assert sorted(stored) == [
        dt.datetime(2025, 11, 18, 10, 0, tzinfo=dt.UTC),
        dt.datetime(2025, 11, 18, 10, 2, tzinfo=dt.UTC),
    ]


def test_it_counts_checks_already_stored_as_duplicates_and_stores_them_once():
    device = DeviceFactory()
    client = device_client(device)
    client.post(URL, [check(device.device_id, timestamp=at(0))], format="json")

    response = client.post(
        URL,
        [
            check(device.device_id, timestamp=at(0)),
            check(device.device_id, timestamp=at(1)),
            check(device.device_id, timestamp=at(1)),
        ],
        format="json",
    )

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    assert HealthCheck.objects.count() == 2


def test_it_answers_a_retried_batch_with_nothing_new_as_all_duplicates():
    device = DeviceFactory()
    batch = [check(device.device_id, timestamp=at(minute)) for minute in range(2)]
    client = device_client(device)
    client.post(URL, batch, format="json")

    response = client.post(URL, batch, format="json")

    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 2, "rejected": []}


def test_it_rejects_the_checks_a_device_sends_for_other_devices():
    device = DeviceFactory(device_id="tv-0001")
    DeviceFactory(device_id="tv-0002")

    response = device_client(device).post(
        URL, [check("tv-0001"), check("tv-0002"), check("ghost")], format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {
            "index": 1,
            "device_id": "tv-0002",
            "errors": {"device_id": ["A device may only report its own health."]},
        },
        {
            "index": 2,
            "device_id": "ghost",
            "errors": {"device_id": ["A device may only report its own health."]},
        },
    ]
    assert list(HealthCheck.objects.values_list("device__device_id", flat=True)) == ["tv-0001"]


def test_it_answers_400_when_every_check_is_rejected():
    device = DeviceFactory(device_id="tv-0001")
    DeviceFactory(device_id="tv-0002")

    response = device_client(device).post(
        URL, [check("tv-0002"), check("tv-0001", crash_free=1.5)], format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert "None of the 2 checks was accepted" in body["error"]
    assert (body["accepted"], body["duplicates"]) == (0, 0)
    assert [entry["index"] for entry in body["rejected"]] == [0, 1]
    assert not HealthCheck.objects.exists()


def test_it_lets_a_gateway_report_for_many_devices_and_rejects_unknown_ones(gateway):
    pilot = DeviceFactory(ring="pilot")
    ring_5 = DeviceFactory(ring="ring_5")

    response = gateway.post(
        URL,
        {"checks": [check(pilot.device_id), check(ring_5.device_id, ring="pilot"), check("ghost-1")]},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"index": 2, "device_id": "ghost-1", "errors": {"device_id": ["No device with this id is enrolled."]}}
    ]
    # The server's ring is stored, whatever the check says.
    assert dict(HealthCheck.objects.values_list("device__device_id", "ring")) == {
        pilot.device_id: "pilot",
        ring_5.device_id: "ring_5",
    }


def test_it_writes_a_batch_with_one_insert_and_refreshes_its_devices_in_one_update(gateway):
    stale = timezone.now() - dt.timedelta(minutes=5)
    devices = [DeviceFactory(last_heartbeat=stale, status=DeviceStatus.OFFLINE) for _ in range(5)]
    checks = [check(d.device_id, timestamp=at(minute)) for d in devices for minute in range(4)]

    with CaptureQueriesContext(connection) as queries:
        response = gateway.post(URL, checks, format="json")

    assert response.json()["accepted"] == 20
    statements = [q["sql"] for q in queries]
    assert sum(_writes_checks(sql) for sql in statements) == 1
    assert sum(sql.startswith('UPDATE "devices_device"') for sql in statements) == 1
    for device in devices:
        device.refresh_from_db()
        assert device.status == DeviceStatus.ONLINE
        assert device.last_heartbeat > stale
        assert device.app_version == "v2.1"


def test_it_records_the_version_of_each_devices_latest_check(gateway):
    device = DeviceFactory(app_version="v2.0")

    gateway.post(
        URL,
        [
            check(device.device_id, timestamp=at(5), version="v2.2"),
            check(device.device_id, timestamp=at(1), version="v2.1"),
        ],
        format="json",
    )

    device.refresh_from_db()
    assert device.app_version == "v2.2"


def test_it_falls_back_to_the_devices_known_version(gateway):
    device = DeviceFactory(app_version="v2.0")

    gateway.post(URL, [check(device.device_id, version=None)], format="json")

    assert HealthCheck.objects.get().version == "v2.0"


def test_it_refuses_a_batch_larger_than_the_limit_with_413(settings):
    device = DeviceFactory()

    response = device_client(device).post(
        URL, [check(device.device_id)] * (settings.SAFEROLL_HEALTH_BATCH_MAX + 1), format="json"
    )

    assert response.status_code == 413
    assert f"at most {settings.SAFEROLL_HEALTH_BATCH_MAX} checks" in response.json()["error"]
    assert not HealthCheck.objects.exists()


def test_it_accepts_a_batch_of_exactly_the_limit(settings):
    settings.SAFEROLL_HEALTH_BATCH_MAX = 3
    device = DeviceFactory()

    response = device_client(device).post(
        URL, [check(device.device_id, timestamp=at(minute)) for minute in range(3)], format="json"
    )

    assert response.status_code == 200
    assert response.json()["accepted"] == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param([], "The batch is empty", id="empty list"),
        pytest.param({"checks": []}, "The batch is empty", id="empty checks"),
        pytest.param({}, "This field is required", id="no checks"),
        pytest.param({"checks": "many"}, "Expected a list", id="checks not a list"),
        pytest.param("checks", "Expected a list", id="a string"),
    ],
)
def test_it_refuses_a_batch_that_is_not_a_list_of_checks(body, message):
    device = DeviceFactory()

    response = device_client(device).post(URL, body, format="json")

    assert response.status_code == 400
    assert message in response.json()["fields"]["checks"][0]


def test_it_refuses_malformed_json():
    device = DeviceFactory()

    response = device_client(device).post(URL, '{"checks": [', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("Malformed request body")


def test_it_refuses_anonymous_batches(api):
    response = api.post(URL, [check("tv-0001")], format="json")

    assert response.status_code == 401


def test_it_refuses_a_viewer(viewer):
    device = DeviceFactory()

    response = viewer.post(URL, [check(device.device_id)], format="json")

    assert response.status_code == 403
    assert not HealthCheck.objects.exists()


def _writes_checks(sql: str) -> bool:
    # "INSERT INTO" on PostgreSQL, "INSERT OR IGNORE INTO" on SQLite.
    return sql.startswith("INSERT") and 'INTO "telemetry_healthcheck"' in sql


def test_it_refuses_a_body_larger_than_django_reads_with_413(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    device = DeviceFactory()

    response = device_client(device).post(
        URL, [check(device.device_id, timestamp=at(minute)) for minute in range(10)], format="json"
    )

    assert response.status_code == 413
    assert "larger than 1000 bytes" in response.json()["error"]
