"""The portal in a real browser: Chromium against the ASGI app (HTTP and WS /ws) served by uvicorn
in this process. Changes made here through the services reach the open pages over the socket."""

import datetime as dt
import random
import time

import pytest
from django.utils import timezone

from rollouts.models import DeviceDeployment, Rollout
from rollouts.services import lifecycle
from saferoll.core import roles
from saferoll.core.alerts import alert_raise
from saferoll.core.models import AlertLevel, FleetState
from telemetry.models import HealthCheck
from telemetry.rollups import rollups_rebuild
from tests.portal.conftest import report_healthy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# How long a live update may take to show (the brief: within a second; CI machines get slack).
LIVE_TIMEOUT_MS = 3000


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def open_rollout(page, rollout: Rollout):
    page.goto(f"/rollouts/{rollout.rollout_id}")
    expect()(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "connected")
    # A marker that a reload would wipe: the update must arrive without one.
    page.evaluate("window.__noReload = true")


def still_same_page(page) -> bool:
    return page.evaluate("window.__noReload === true")


@pytest.mark.parametrize("role", [roles.VIEWER, roles.OPERATOR, roles.RELEASE_MANAGER, roles.ADMIN])
def test_each_role_signs_in_and_sees_who_it_is_with_a_live_connection(browser_page, role):
    page = browser_page(role, login_form=True)
    expect()(page.locator("[data-role]")).to_have_text(roles.GROUP_NAMES[role])
    expect()(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "connected")
    expect()(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_a_promotion_shows_on_an_open_detail_page_without_a_reload(browser_page, rollout_factory):
    page = browser_page(roles.RELEASE_MANAGER)
    rollout = rollout_factory("pilot")
    open_rollout(page, rollout)
    state = page.get_by_test_id("rollout-state")
    expect()(state).to_have_text("Pilot")

    lifecycle.rollout_promote(rollout=rollout, actor=page.user, reason="Looks good")

    expect()(state).to_have_text("Ring 5%", timeout=LIVE_TIMEOUT_MS)
    expect()(page.locator('[data-ring="ring_5"]')).to_have_attribute("data-ring-state", "active")
    expect()(page.locator('[data-ring="pilot"]')).to_have_attribute("data-ring-state", "done")
    expect()(page.locator("[data-event]").first).to_have_attribute("data-event", "PROMOTE")
    assert still_same_page(page)


def test_an_automatic_rollback_shows_its_alert_and_the_new_state(browser_page, rollout_factory):
    page = browser_page(roles.OPERATOR)
    rollout = rollout_factory("pilot")
    open_rollout(page, rollout)

    reason = "Critical: crash-free rate 94.0% is below 95.0%."
    lifecycle.rollout_rollback(rollout=rollout, actor=None, reason=reason)
    alert_raise(
        level=AlertLevel.CRITICAL,
        kind="AUTO_ROLLBACK",
        title=f"SafeRoll rolled back {rollout.release.version} ({rollout.rollout_id})",
        message=reason,
        rollout=rollout,
    )

    toast = page.locator(".toast[data-kind='AUTO_ROLLBACK']")
    expect()(toast).to_contain_text("🚨 Auto-rollback triggered", timeout=LIVE_TIMEOUT_MS)
    expect()(toast).to_contain_text(reason)
    expect()(page.get_by_test_id("rollout-state")).to_have_text("Rolled back", timeout=LIVE_TIMEOUT_MS)
    expect()(page.locator('[data-ring="pilot"]')).to_have_attribute("data-ring-state", "failed")
    expect()(page.locator("#nav-alert-count")).to_have_text("1")
    assert still_same_page(page)


def test_a_viewer_sees_no_action_buttons(browser_page, rollout_factory):
    page = browser_page(roles.VIEWER)
    rollout = rollout_factory("pilot")
    open_rollout(page, rollout)
    expect()(page.locator("[data-no-actions]")).to_be_visible()
    expect()(page.locator("[data-action]")).to_have_count(0)
    page.goto("/dashboard")
    expect()(page.get_by_role("button", name="Raise emergency stop…")).to_have_count(0)
    expect()(page.get_by_role("link", name="New rollout")).to_have_count(0)


def test_an_operator_is_offered_pause_and_the_emergency_stop_only(browser_page, rollout_factory):
    page = browser_page(roles.OPERATOR)
    rollout = rollout_factory("pilot")
    open_rollout(page, rollout)
    buttons = page.locator("[data-action]")
    expect()(buttons).to_have_count(1)
    expect()(buttons).to_have_attribute("data-action", "pause")
    page.goto("/dashboard")
    expect()(page.get_by_role("button", name="Raise emergency stop…")).to_be_visible()


def test_a_rollback_demands_confirmation_and_a_reason(browser_page, rollout_factory):
    page = browser_page(roles.RELEASE_MANAGER)
    rollout = rollout_factory("pilot")
    open_rollout(page, rollout)

    page.locator('[data-action="rollback"]').click()
    dialog = page.locator("dialog#dlg-rollback")
    expect()(dialog).to_be_visible()
    expect()(dialog).to_contain_text("cannot be undone")
    # Cancelling changes nothing.
    dialog.get_by_role("button", name="Cancel").click()
    expect()(dialog).to_be_hidden()

    page.locator('[data-action="rollback"]').click()
    dialog.locator('[data-confirm="rollback"]').click()
    expect()(dialog.get_by_role("alert")).to_have_text("A reason is required.")
    expect()(dialog).to_be_visible()
    rollout.refresh_from_db()
    assert rollout.status == "active"

    dialog.get_by_label("Reason").fill("Boot loop on gen3 panels")
    dialog.locator('[data-confirm="rollback"]').click()
    expect()(page.locator('[data-message-level="success"]')).to_have_text("Rollout rolled back.")
    expect()(page.get_by_test_id("rollout-state")).to_have_text("Rolled back")
    expect()(page.locator("[data-event]").first).to_contain_text("Boot loop on gen3 panels")


def test_promote_is_disabled_with_the_gates_reason(browser_page, rollout_factory):
    page = browser_page(roles.RELEASE_MANAGER)
    rollout = rollout_factory("pilot", healthy=False)
    open_rollout(page, rollout)
    promote = page.locator('[data-action="promote"]')
    expect()(promote).to_be_disabled()
    expect()(page.locator('[data-why="promote"]')).to_contain_text(
        "Cannot promote: WAIT — Installing: 0 of 3 devices run"
    )

    # Devices report healthy; the autopilot's evaluation reaches the page and enables the button.
    report_healthy(rollout)
    from saferoll.portal.broadcast import broadcast_evaluation
    from tests.factories import EvaluationFactory

    broadcast_evaluation(EvaluationFactory(rollout=rollout, action="PROMOTE", reason="All gates passed."))
    expect()(promote).to_be_enabled(timeout=LIVE_TIMEOUT_MS)


def test_the_emergency_stop_banner_appears_on_every_open_page(browser_page, rollout_factory):
    page = browser_page(roles.VIEWER)
    rollout_factory("pilot")
    page.goto("/devices")
    expect()(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "connected")
    from rollouts.services.emergency import emergency_stop_raise
    from saferoll.portal.broadcast import broadcast_fleet

    emergency_stop_raise(actor=None, reason="Hospital network outage")
    broadcast_fleet()
    banner = page.locator('[data-emergency="on"]')
    expect()(banner).to_contain_text("Hospital network outage", timeout=LIVE_TIMEOUT_MS)


def test_the_indicator_says_reconnecting_and_the_page_retries_when_the_socket_drops(browser_page):
    page = browser_page(roles.VIEWER)
    attempts = []

    def refuse(ws):
        # Stands in for a server (or Redis) that drops the socket: close at once, abnormally.
        attempts.append(ws.url)
        ws.close(code=1011, reason="channel layer down")

    page.route_web_socket("**/ws", refuse)
    page.goto("/dashboard")
    indicator = page.locator("[data-live-indicator]")
    expect()(indicator).to_have_attribute("data-state", "reconnecting")
    expect()(indicator).to_contain_text("Reconnecting")
    expect()(page.locator("body")).to_have_attribute("data-live-state", "reconnecting")
    # Backoff (about 1 s, then 2 s): the page keeps trying.
    deadline = time.monotonic() + 5
    while len(attempts) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(attempts) >= 2


# --- screenshots --------------------------------------------------------------------------------


def demo_data(make_user) -> Rollout:
    """A small fleet with history: a completed rollout, an automatic rollback, one in ring_5 with
    30 minutes of health, and one waiting to start."""
    from tests.factories import DeviceFactory, HardwareVariantFactory, ReleaseFactory
    from tests.portal.conftest import fast_plan

    rng = random.Random(7)
    manager = make_user(roles.RELEASE_MANAGER, username="maria")
    variant = HardwareVariantFactory(name="tv-55-gen3")
    sites = ["St. Mary's", "General East", "Children's North", "Riverside"]
    for ring, count in (("pilot", 10), ("ring_5", 6), ("ring_25", 12), ("ring_100", 20)):
        for n in range(count):
            DeviceFactory(
                device_id=f"tv-{ring.replace('_', '')}-{n:03d}",
                ring=ring,
                variant=variant,
                site=rng.choice(sites),
                app_version="v2.0",
            )
    plan = fast_plan()
    stable = ReleaseFactory(version="v2.0", is_stable=True)

    done = lifecycle.rollout_create(
        release=ReleaseFactory(version="v1.9", previous_release=None), plan=plan, actor=manager
    )
    lifecycle.rollout_start(rollout=done, actor=manager)
    for _ in range(4):
        report_healthy(done)
        lifecycle.rollout_promote(rollout=done, actor=None)
    bad = lifecycle.rollout_create(
        release=ReleaseFactory(version="v2.1-beta", previous_release=stable), plan=plan, actor=manager
    )
    lifecycle.rollout_start(rollout=bad, actor=manager)
    report_healthy(bad)
    lifecycle.rollout_promote(rollout=bad, actor=manager)
    reason = "Critical: crash-free rate 93.8% is below 95.0%."
    lifecycle.rollout_rollback(rollout=bad, actor=None, reason=reason)
    alert_raise(
        level=AlertLevel.CRITICAL,
        kind="AUTO_ROLLBACK",
        title=f"SafeRoll rolled back v2.1-beta ({bad.rollout_id})",
        message=reason,
        rollout=bad,
    )

    live = lifecycle.rollout_create(
        release=ReleaseFactory(version="v2.1", previous_release=stable), plan=plan, actor=manager
    )
    lifecycle.rollout_start(rollout=live, actor=manager)
    report_healthy(live)
    lifecycle.rollout_promote(rollout=live, actor=manager, reason="Pilot green for 30 minutes.")
    live.refresh_from_db()
    now = timezone.now()
    checks = []
    for deployment in DeviceDeployment.objects.filter(rollout=live).select_related("device"):
        for minute in range(30, -1, -1):
            at = now - dt.timedelta(minutes=minute, seconds=rng.randint(0, 50))
            if at > now:
                continue
            dip = 0.006 if 8 <= minute <= 12 else 0
            checks.append(
                HealthCheck(
                    device=deployment.device,
                    ring=deployment.ring,
                    version="v2.1",
                    boot_ok=rng.random() > 0.002,
                    crash_free=min(1, 0.996 - dip + rng.uniform(-0.003, 0.003)),
                    checkin_latency_ms=int(48 + rng.uniform(-15, 25) + (40 if dip else 0)),
                    device_time=at,
                    received_at=at,
                )
            )
    HealthCheck.objects.bulk_create(checks)
    rollups_rebuild()
    DeviceDeployment.objects.filter(rollout=live).update(
        state="activated", activated_at=now - dt.timedelta(minutes=31)
    )
    lifecycle.rollout_create(release=ReleaseFactory(version="v2.2"), plan=plan, actor=manager)
    FleetState.load()
    FleetState.objects.filter(pk=1).update(autopilot_last_run=now)
    return live


@pytest.mark.parametrize(("label", "width", "height"), [("desktop", 1280, 900), ("phone", 390, 844)])
def test_screenshots_of_the_dashboard_and_a_rollout(
    browser_page, make_user, screenshot_dir, label, width, height
):
    live = demo_data(make_user)
    page = browser_page(roles.RELEASE_MANAGER, width=width, height=height)
    page.goto("/dashboard")
    expect()(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "connected")
    page.screenshot(path=str(screenshot_dir / f"dashboard-{label}.png"), full_page=True)
    open_rollout(page, live)
    expect()(page.locator("#health-chart canvas")).to_have_count(1)
    page.locator("details[id^=ev-]").first.evaluate("d => d.open = true")
    page.screenshot(path=str(screenshot_dir / f"rollout-{label}.png"), full_page=True)
    if label == "phone":
        # A phone page is long: slices of one screen each are what a person actually sees.
        total = page.evaluate("document.documentElement.scrollHeight")
        for index, top in enumerate(range(0, total, height)):
            clip = {"x": 0, "y": top, "width": width, "height": min(height, total - top)}
            page.screenshot(
                path=str(screenshot_dir / f"rollout-phone-{index + 1}.png"), full_page=True, clip=clip
            )
        page.get_by_role("button", name="Open navigation").click()
        expect()(page.get_by_role("link", name="Audit log")).to_be_visible()
        page.screenshot(path=str(screenshot_dir / "nav-phone.png"))
