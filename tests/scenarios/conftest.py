"""A live SafeRoll for the scenarios: the ASGI app served by uvicorn from a thread of this process,
a real Celery worker and beat on Redis judging every second, on the transactional test database,
with the stable release seeded and a release manager's token. The fleet is enrolled by the
simulator itself when a scenario starts."""

import socket
import threading
import time

import pytest
from django.test.utils import override_settings

from rollouts.services import releases
from saferoll.core import roles
from saferoll.core.management.commands.adduser import user_ensure_role
from tests.conftest import autopilot_on_redis

# The autopilot's period in these tests: the 1–2 s of the scenarios' fast timings.
AUTOPILOT_PERIOD_SECONDS = 1.0
IN_MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live_server_url():
    """saferoll.asgi over HTTP on a free port. The in-memory channel layer keeps the autopilot's
    broadcasts inside this process instead of another test run's Redis channels."""
    import uvicorn

    layers = override_settings(CHANNEL_LAYERS=IN_MEMORY_LAYER)
    layers.enable()
    from saferoll.asgi import application

    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=_free_port(), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-scenarios", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=10)
    layers.disable()


@pytest.fixture
def autopilot(transactional_db, settings, tmp_path, own_redis_database):
    """A real worker and beat on Redis (this test process's own queues, see tests/conftest.py)
    running the autopilot's round every AUTOPILOT_PERIOD_SECONDS."""
    if not own_redis_database.startswith("redis://"):
        pytest.skip("REDIS_URL is not set: the scenarios need a real Celery worker on Redis")
    settings.SAFEROLL_AUTOPILOT_PERIOD_SECONDS = AUTOPILOT_PERIOD_SECONDS
    with autopilot_on_redis(AUTOPILOT_PERIOD_SECONDS, tmp_path):
        yield


@pytest.fixture
def stable_release(transactional_db):
    """The fleet's stable release, which every scenario's release rolls back to."""
    return releases.release_create(version="v2.0", actor="test", is_stable=True)


@pytest.fixture
def manager_token(role_groups) -> str:
    return user_ensure_role(username="release-test", role=roles.RELEASE_MANAGER, actor="test").token


@pytest.fixture
def saferoll_live(live_server_url, autopilot, stable_release, manager_token):
    """Everything a scenario needs on the server side: (base URL, release manager's token)."""
    return live_server_url, manager_token
