"""Rate limits from the environment, refused at start-up when malformed, and counted in Redis when
REDIS_URL is set so that every web process shares them."""

import os
import subprocess
import sys
import uuid

import pytest
import redis
from django.conf import settings
from django.test import Client

from saferoll.core.env import parse_rate
from tests.factories import DeviceFactory, UserFactory
from tests.telemetry.support import check, device_client

# UserFactory's.
PASSWORD = "correct-horse-battery"


def start(*, embedded: bool = False, **env: str) -> subprocess.CompletedProcess:
    """Set SafeRoll up in a fresh interpreter with these variables (the suite's, or the embedded
    default's: no DATABASE_URL or REDIS_URL), and print its rates and its cache."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SAFEROLL_THROTTLE_RATES); print(s.CACHES['default']['BACKEND'])"
    )
    base = dict(os.environ)
    if embedded:
        base = {key: value for key, value in base.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "DJANGO_SETTINGS_MODULE": "saferoll.settings", **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("120/minute", (120, 60)),
        ("120/m", (120, 60)),
        ("10/15m", (10, 900)),
        ("5/s", (5, 1)),
        ("3/seconds", (3, 1)),
        ("1000/hour", (1000, 3600)),
        (" 2 / 3 days ", (2, 3 * 86400)),
        ("7/Min", (7, 60)),
    ],
)
def test_it_reads_a_rate_as_a_count_per_period(rate, parsed):
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize(
    "rate", ["lots", "120", "0/minute", "10/0m", "-1/m", "10/fortnight", "10/ms", "/m", ""]
)
def test_it_refuses_what_is_not_a_rate(rate):
    with pytest.raises(ValueError):
        parse_rate(rate)


def test_each_rate_is_read_from_the_environment_and_counted_in_redis_when_redis_url_is_set():
    variables = {
        "SAFEROLL_THROTTLE_HEALTH": "1/s",
        "SAFEROLL_THROTTLE_HEALTH_BATCH": "2/m",
        "SAFEROLL_THROTTLE_DESIRED_STATE": "3/h",
        "SAFEROLL_THROTTLE_ENROLL": "4/d",
        "SAFEROLL_THROTTLE_SIGN_IN": "5/15m",
    }

    started = start(REDIS_URL="redis://127.0.0.1:6379/0", **variables)

    assert started.returncode == 0, started.stderr
    rates, backend = started.stdout.splitlines()[-2:]
    assert rates == str(
        {"health": "1/s", "health_batch": "2/m", "desired_state": "3/h", "enroll": "4/d", "sign_in": "5/15m"}
    )
    assert backend == "django.core.cache.backends.redis.RedisCache"


def test_the_embedded_default_counts_in_memory(tmp_path):
    started = start(embedded=True, SAFEROLL_STATE_DIR=str(tmp_path))

    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines()[-1] == "django.core.cache.backends.locmem.LocMemCache"


def test_it_refuses_to_start_with_a_malformed_rate():
    started = start(SAFEROLL_THROTTLE_HEALTH="lots")

    assert started.returncode != 0
    assert (
        "ImproperlyConfigured: SAFEROLL_THROTTLE_HEALTH must be a rate such as '120/minute' or "
        "'10/15m' (count/period), not 'lots'."
    ) in started.stderr


def test_it_refuses_to_start_with_a_negative_number_of_proxies():
    started = start(SAFEROLL_TRUSTED_PROXIES="-1")

    assert started.returncode != 0
    assert "ImproperlyConfigured: SAFEROLL_TRUSTED_PROXIES must be at least 0, not -1." in started.stderr


def test_the_default_rates_leave_the_demo_and_its_rehearsals_far_below_them():
    per_minute = {
        scope: count * 60 / seconds
        for scope, (count, seconds) in (
            (scope, parse_rate(rate)) for scope, rate in settings.SAFEROLL_THROTTLE_RATES.items()
        )
    }
    # A device checks every 5 s; the fast rehearsal reads its desired state every 5 s.
    assert per_minute["health"] >= 5 * 12
    assert per_minute["desired_state"] >= 5 * 12 / 2
    # The demo's 8 site gateways share one account, each posting a batch every 5 s.
    assert per_minute["health_batch"] >= 5 * 8 * 12
    # The demo's 1,000 devices enroll at once, from one address, and come back within a minute.
    count, seconds = parse_rate(settings.SAFEROLL_THROTTLE_RATES["enroll"])
    assert count >= 1000
    assert seconds <= 60


@pytest.fixture
def redis_cache(settings):
    """The production cache on the test run's Redis, under a prefix of this test's own, which is
    deleted afterwards (the database is shared with other test processes' channel layers)."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set")
    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": prefix,
        }
    }
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield lambda: list(client.scan_iter(f"{prefix}:*"))
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


@pytest.mark.django_db
def test_api_and_sign_in_counts_are_kept_in_redis(redis_cache, rate_limits):
    rate_limits(health="1/minute", sign_in="1/15m")
    device = DeviceFactory(device_id="tv-0001")
    UserFactory(username="vera")
    api = device_client(device)

    assert api.post("/api/health", check("tv-0001"), format="json").status_code == 200
    assert api.post("/api/health", check("tv-0001"), format="json").status_code == 429
    assert Client().post("/login", {"username": "vera", "password": "wrong"}).status_code == 200
    assert Client().post("/login", {"username": "vera", "password": PASSWORD}).status_code == 429
    # One key for the device's requests, one per sign-in count (the address, the username).
    assert len(redis_cache()) == 3
