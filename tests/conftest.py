import contextlib
import os
import uuid
from pathlib import Path

import pytest
import redis
from celery import beat
from celery.contrib.testing.worker import start_worker
from django.apps import apps as django_apps
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from saferoll.core import roles
from tests.factories import UserFactory

# Rate limits count in the default cache. Tests keep theirs in memory: clearing a Redis cache would
# empty the Redis database that other test processes' channel layers use.
TEST_CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}}
# The suite speaks plain HTTP, as the embedded default does: the test client, and the live servers
# that the browser and the simulator talk to. Its environment is production's (DATABASE_URL), where
# HTTPS is on by default, so it is switched off here, before any test module builds a WSGI or ASGI
# handler (middleware reads these settings once). tests/system/test_security.py switches it on.
SUITE_SETTINGS = override_settings(
    CACHES=TEST_CACHES,
    SAFEROLL_HTTPS=False,
    SECURE_SSL_REDIRECT=False,
    SESSION_COOKIE_SECURE=False,
    CSRF_COOKIE_SECURE=False,
    SECURE_HSTS_SECONDS=0,
)


def pytest_configure(config):
    SUITE_SETTINGS.enable()


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with no rate-limit counts, whatever the tests before it sent."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def rate_limits(settings):
    """`rate_limits(health="2/minute")`: those rates for this test, the others as configured."""

    def change(**rates: str) -> None:
        settings.SAFEROLL_THROTTLE_RATES = {**settings.SAFEROLL_THROTTLE_RATES, **rates}

    return change


@pytest.fixture(scope="session", autouse=True)
def own_redis_database(worker_id):
    """Each test process keeps its Celery queues under a key prefix of its own in REDIS_URL's
    database, so that no process ever takes another's tasks: not a parallel worker of this run,
    nor one of a second run on the same machine. Set before anything connects to the broker."""
    from saferoll.celery import app

    if not os.environ.get("REDIS_URL"):
        yield app.conf.broker_url
        return
    prefix = f"saferoll-test-{uuid.uuid4().hex[:12]}-{worker_id}:"
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "global_keyprefix": prefix}
    yield app.conf.broker_url
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    stale = list(client.scan_iter(match=f"{prefix}*"))
    if stale:
        client.delete(*stale)


@contextlib.contextmanager
def autopilot_on_redis(period_seconds: float, state_dir: Path):
    """A real Celery worker and beat on this test process's own Redis queues (own_redis_database),
    running the autopilot's round every `period_seconds`; the app's schedule is restored after."""
    from saferoll.celery import app

    saved = app.conf.beat_schedule
    app.conf.beat_schedule = {
        "evaluate-active-rollouts": {
            "task": "rollouts.tasks.evaluate_active_rollouts",
            "schedule": period_seconds,
        }
    }
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            scheduler = beat.EmbeddedService(
                app, thread=True, max_interval=0.5, schedule_filename=str(state_dir / "beat-schedule")
            )
            scheduler.start()
            try:
                yield
            finally:
                scheduler.stop()
    finally:
        app.conf.beat_schedule = saved


@pytest.fixture
def role_groups(db):
    """The role groups. A transactional test flushes the tables the migrations filled, so they are
    synced again here (sync_role_groups toggles models_module; the real registry's is restored)."""
    from django.contrib.auth.models import Group

    if Group.objects.filter(name__in=roles.GROUP_NAMES.values()).count() == len(roles.GROUP_NAMES):
        return
    saved = {config.label: config.models_module for config in django_apps.get_app_configs()}
    try:
        roles.sync_role_groups(django_apps)
    finally:
        for config in django_apps.get_app_configs():
            config.models_module = saved[config.label]


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Tests create many users; the production hasher is deliberately slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api():
    """An anonymous API client."""
    return APIClient()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def persona(db):
    """`persona("viewer")` → an API client logged in as a fresh user with that role."""

    def make(role: str) -> APIClient:
        user = UserFactory(username=f"{role}-user", role=role)
        client = client_for(user)
        client.user = user
        return client

    return make


@pytest.fixture
def release_manager(persona):
    return persona(roles.RELEASE_MANAGER)


@pytest.fixture
def viewer(persona):
    return persona(roles.VIEWER)


@pytest.fixture
def operator(persona):
    return persona(roles.OPERATOR)


@pytest.fixture
def admin_client(persona):
    return persona(roles.ADMIN)
