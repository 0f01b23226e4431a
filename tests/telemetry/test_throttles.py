"""Health ingestion is rate limited per device and per gateway account (SPEC §14): past its rate a
client is answered 429 with Retry-After and a sentence, and nothing it sent is stored."""

import time

import pytest

from saferoll.core.api.throttles import RateThrottle
from telemetry.models import HealthCheck
from tests.factories import DeviceFactory
from tests.telemetry.support import check, device_client

pytestmark = pytest.mark.django_db

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}


def at(minute: int) -> str:
    return f"2025-11-18T10:{minute:02d}:00Z"


def report(client, device_id: str, minute: int):
    return client.post("/api/health", check(device_id, timestamp=at(minute)), format="json")


def report_batch(client, device_id: str, minute: int):
    return client.post("/api/health/batch", [check(device_id, timestamp=at(minute))], format="json")


def assert_throttled(response) -> None:
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 60
    assert response.json() == {
        "error": f"Too many requests from this client; wait {wait} seconds, then try again.",
        "retry_after": wait,
    }


def test_a_device_past_its_rate_is_answered_429_and_its_check_is_not_stored(rate_limits):
    rate_limits(health="3/minute")
    device = DeviceFactory(device_id="tv-0001")
    client = device_client(device)

    answers = [report(client, "tv-0001", minute) for minute in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert_throttled(answers[-1])
    assert HealthCheck.objects.count() == 3


def test_each_device_has_a_count_of_its_own(rate_limits):
    rate_limits(health="1/minute")
    first, second = DeviceFactory(device_id="tv-0001"), DeviceFactory(device_id="tv-0002")

    assert report(device_client(first), "tv-0001", 0).status_code == 200
    assert report(device_client(first), "tv-0001", 1).status_code == 429
    assert report(device_client(second), "tv-0002", 0).status_code == 200


def test_a_device_may_report_again_once_the_window_has_passed(rate_limits, monkeypatch):
    rate_limits(health="1/minute")
    device = DeviceFactory(device_id="tv-0001")
    client = device_client(device)
    assert report(client, "tv-0001", 0).status_code == 200
    assert report(client, "tv-0001", 1).status_code == 429

    monkeypatch.setattr(RateThrottle, "timer", staticmethod(lambda: time.time() + 61))

    assert report(client, "tv-0001", 2).status_code == 200


def test_the_gateways_of_one_account_share_its_batch_count(rate_limits, gateway):
    rate_limits(health_batch="2/minute")
    DeviceFactory(device_id="tv-0001")

    answers = [report_batch(gateway, "tv-0001", minute) for minute in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert_throttled(answers[-1])
    assert HealthCheck.objects.count() == 2


def test_a_device_posting_batches_is_counted_apart_from_the_gateways(rate_limits, gateway):
    rate_limits(health_batch="1/minute")
    device = DeviceFactory(device_id="tv-0001")
    assert report_batch(gateway, "tv-0001", 0).status_code == 200
    assert report_batch(gateway, "tv-0001", 1).status_code == 429

    assert report_batch(device_client(device), "tv-0001", 2).status_code == 200


def test_single_checks_and_batches_are_counted_apart(rate_limits):
    rate_limits(health="1/minute", health_batch="1/minute")
    device = DeviceFactory(device_id="tv-0001")
    client = device_client(device)

    assert report(client, "tv-0001", 0).status_code == 200
    assert report_batch(client, "tv-0001", 1).status_code == 200
    assert report(client, "tv-0001", 2).status_code == 429


def test_ingestion_goes_on_unlimited_while_the_cache_is_unreachable(rate_limits, settings):
    rate_limits(health="1/minute")
    settings.CACHES = DEAD_REDIS
    device = DeviceFactory(device_id="tv-0001")
    client = device_client(device)

    answers = [report(client, "tv-0001", minute) for minute in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert HealthCheck.objects.count() == 3
