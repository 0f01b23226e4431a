"""Fixtures of the portal tests: role personas, rollouts in a given state, and for the browser
tests a real ASGI server (uvicorn, in a thread of this process) and one shared Chromium."""

import datetime as dt
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from devices.models import Device
from rollouts.choices import DeploymentState
from rollouts.gates import GateConfig
from rollouts.models import DeviceDeployment, Rollout
from rollouts.services import lifecycle
from saferoll.core import roles
from tests.factories import (
    DEMO_STAGES,
    DeviceFactory,
    HealthCheckFactory,
    ReleaseFactory,
    RolloutPlanFactory,
    UserFactory,
)

CHROMIUM = "/usr/bin/chromium"
IN_MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
PASSWORD = "correct-horse-battery"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
READER_ROLES = (roles.VIEWER, roles.OPERATOR, roles.RELEASE_MANAGER, roles.ADMIN)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives a real Chromium against a live ASGI server (Playwright)"
    )


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Every persona has a password; PBKDF2's deliberate slowness is not what these tests measure."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- data -----------------------------------------------------------------------------------------


@pytest.fixture
def make_user(role_groups):
    def make(role: str | None, username: str | None = None):
        return UserFactory(username=username or f"{role or 'norole'}-user", role=role)

    return make


@pytest.fixture
def page_client(make_user):
    """`page_client("viewer")` → a Django test client signed in as a fresh user with that role."""

    def make(role: str | None) -> Client:
        client = Client()
        user = make_user(role)
        client.force_login(user)
        client.user = user
        return client

    return make


def fast_plan(**gates):
    """Four rings, no bake, gates that judge a handful of devices (so tests stay small)."""
    config = GateConfig(
        min_sample=3, min_checks=3, reporting_rate_min=None, reporting_rate_critical=None, **gates
    )
    return RolloutPlanFactory(
        name="portal-test",
        stages=[dict(stage) for stage in DEMO_STAGES],
        gate_config=config.to_dict(),
        is_default=True,
    )


def make_fleet(per_ring: int = 3) -> None:
    for ring in ("pilot", "ring_5", "ring_25", "ring_100"):
        for _ in range(per_ring):
            DeviceFactory(ring=ring)


def report_healthy(rollout: Rollout, *, crash_free: float = 0.998) -> None:
    """The current ring's devices activate the release and report health on it."""
    rollout.refresh_from_db()
    now = timezone.now()
    deployments = DeviceDeployment.objects.filter(rollout=rollout, ring=rollout.current_ring).select_related(
        "device"
    )
    for deployment in deployments:
        HealthCheckFactory(
            device=deployment.device,
            ring=rollout.current_ring,
            version=rollout.release.version,
            crash_free=crash_free,
            received_at=now,
        )
    deployments.update(state=DeploymentState.ACTIVATED, activated_at=now - dt.timedelta(minutes=2))


@pytest.fixture
def rollout_factory(make_user):
    """`rollout_factory("pilot")` → a rollout of a fresh release created and moved to that state
    through the services: "created", "pilot", "ring_5", "paused" (in pilot)."""

    def make(state: str = "pilot", *, version: str | None = None, healthy: bool = True) -> Rollout:
        actor = make_user(roles.RELEASE_MANAGER, username="setup-manager")
        plan = fast_plan()
        if not Device.objects.exists():
            make_fleet()
        release = ReleaseFactory(version=version) if version else ReleaseFactory()
        rollout = lifecycle.rollout_create(release=release, plan=plan, actor=actor)
        if state == "created":
            return rollout
        lifecycle.rollout_start(rollout=rollout, actor=actor)
        if healthy:
            report_healthy(rollout)
        if state == "ring_5":
            lifecycle.rollout_promote(rollout=rollout, actor=actor)
            if healthy:
                report_healthy(rollout)
        if state == "paused":
            lifecycle.rollout_pause(rollout=rollout, actor=actor, reason="Investigating")
        rollout.refresh_from_db()
        return rollout

    return make


# --- browser tests ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def asgi_server():
    """saferoll.asgi served by uvicorn in a background thread, with the in-memory channel layer so
    that a broadcast made by this process reaches the sockets the server holds."""
    import uvicorn

    layers = override_settings(CHANNEL_LAYERS=IN_MEMORY_LAYER)
    layers.enable()
    from saferoll.asgi import application

    port = _free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    layers.disable()


@pytest.fixture(scope="module")
def chromium():
    """One headless Debian Chromium shared by every test of the browser module (Playwright's sync
    API). Not session-wide: while Playwright runs it keeps an event loop in this thread, which would
    break async_to_sync in the websocket tests that run after it."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        missing = f"{CHROMIUM} is not installed; the browser tests need Debian's Chromium."
        if os.environ.get("CI"):
            pytest.fail(missing + " .ci/run installs it; a green CI must not skip the browser.")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make from
    # it are plain synchronous code, so Django's async-safety guard is relaxed for the session.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
    yield browser
    browser.close()
    playwright.stop()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_page(chromium, asgi_server, transactional_db, make_user):
    """`browser_page("operator")` → a Playwright page of a fresh user with that role. With
    `login_form=True` it signs in through the login page; otherwise it is handed a session cookie
    (faster: the sign-in itself is tested once per role)."""
    contexts = []

    def make(role: str, *, width: int = 1280, height: int = 900, login_form: bool = False):
        user = make_user(role, username=f"{role}-browser")
        context = chromium.new_context(viewport={"width": width, "height": height}, base_url=asgi_server)
        context.set_default_timeout(5000)
        contexts.append(context)
        page = context.new_page()
        if login_form:
            page.goto("/login")
            page.get_by_label("Username").fill(user.username)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/dashboard")
        else:
            client = Client()
            client.force_login(user)
            session = client.cookies[settings.SESSION_COOKIE_NAME].value
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": asgi_server}]
            )
        page.user = user
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
