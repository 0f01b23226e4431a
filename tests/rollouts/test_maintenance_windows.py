"""Maintenance windows per site or region, in their own time zone, on some weekdays: what a plan
accepts, and when a device is told it may activate (the most specific window that covers it; the
plan's UTC window when none does)."""

import datetime as dt

import pytest

from rollouts.maintenance import windows_activation_start
from rollouts.models import RolloutPlan
from rollouts.services import lifecycle, plans
from rollouts.services.deployments import DesiredAction, device_desired_state
from saferoll.core.models import AuditEvent
from tests.factories import DeviceFactory, ReleaseFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
BERLIN_NIGHTS = {"region": "eu", "time_zone": "Europe/Berlin", "start": "02:00", "end": "05:00"}
WORKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def devices(db) -> dict[str, object]:
    return {
        "berlin": DeviceFactory(device_id="berlin", ring="pilot", region="eu", site="Charité"),
        "lyon": DeviceFactory(device_id="lyon", ring="pilot", region="eu", site="Lyon"),
        "boston": DeviceFactory(device_id="boston", ring="pilot", region="us", site="Mercy"),
    }


def activate_after(manager, windows, device, now, **plan_fields):
    """When `device` is told it may activate, in a started rollout of a plan with these windows."""
    plan = plans.plan_create(
        actor=manager, name="windows", stages=[{"ring": "pilot"}], maintenance_windows=windows, **plan_fields
    )
    rollout = lifecycle.rollout_create(release=ReleaseFactory(version="v2.1"), plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    desired = device_desired_state(device=device, now=now)
    assert desired.action == DesiredAction.INSTALL
    return desired.activate_after


# --- what a plan accepts ----------------------------------------------------------------------


def test_a_release_manager_sets_windows_and_the_change_is_audited(release_manager, plan, devices):
    windows = [
        {**BERLIN_NIGHTS, "weekdays": ["fri", "mon", "mon"]},
        {"site": "Mercy", "time_zone": "America/New_York", "start": "23:00", "end": "01:30"},
        {"time_zone": "UTC", "start": "03:00", "end": "04:00"},
    ]

    response = release_manager.patch("/api/plans/test-plan", {"maintenance_windows": windows}, format="json")

    assert response.status_code == 200, response.json()
    stored = response.json()["maintenance_windows"]
    assert stored[0]["weekdays"] == ["mon", "fri"]
    assert stored[1] == windows[1]
    assert RolloutPlan.objects.get(pk=plan.pk).maintenance_windows == stored
    event = AuditEvent.objects.get(object_type="rolloutplan", action="UPDATE")
    assert event.actor == release_manager.user
    assert event.changes["after"]["maintenance_windows"] == stored


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            {**BERLIN_NIGHTS, "time_zone": "Mars/Base"},
            "Maintenance window 1: 'Mars/Base' is not a time zone; use an IANA name such as 'Europe/Berlin'.",
        ),
        (
            {**BERLIN_NIGHTS, "time_zone": "../../etc/passwd"},
            "Maintenance window 1: '../../etc/passwd' is not a time zone; use an IANA name such as "
            "'Europe/Berlin'.",
        ),
        # The server's own zone, not the place's.
        (
            {**BERLIN_NIGHTS, "time_zone": "localtime"},
            "Maintenance window 1: 'localtime' is not a time zone; use an IANA name such as 'Europe/Berlin'.",
        ),
        (
            {**BERLIN_NIGHTS, "weekdays": ["mon", "funday"]},
            "Maintenance window 1: 'funday' is not a weekday; use mon, tue, wed, thu, fri, sat, sun.",
        ),
        (
            {**BERLIN_NIGHTS, "weekdays": []},
            "Maintenance window 1: weekdays must be a list of days (mon, tue, wed, thu, fri, sat, sun).",
        ),
        (
            {**BERLIN_NIGHTS, "end": "02:00"},
            "Maintenance window 1: start and end are both 02:00; a window needs time between them.",
        ),
        (
            {**BERLIN_NIGHTS, "start": "2:00"},
            "Maintenance window 1: start must be a time of day as HH:MM (24-hour).",
        ),
        (
            {**BERLIN_NIGHTS, "end": "24:00"},
            "Maintenance window 1: end must be a time of day as HH:MM (24-hour).",
        ),
        (
            {**BERLIN_NIGHTS, "site": "Charité"},
            "Maintenance window 1 is for a site or for a region, not both; name one, or neither for the "
            "whole fleet.",
        ),
        ({**BERLIN_NIGHTS, "region": "mars"}, "Maintenance window 1: no device is in region 'mars'."),
        (
            {key: value for key, value in BERLIN_NIGHTS.items() if key != "time_zone"},
            "Maintenance window 1 needs a time_zone such as 'Europe/Berlin'.",
        ),
        ({**BERLIN_NIGHTS, "zone": "UTC"}, "Maintenance window 1 has unknown setting(s): zone."),
    ],
)
def test_it_refuses_a_window_that_does_not_hold_together(release_manager, plan, devices, window, message):
    response = release_manager.patch("/api/plans/test-plan", {"maintenance_windows": [window]}, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "Invalid input.", "fields": {"maintenance_windows": [message]}}
    assert RolloutPlan.objects.get(pk=plan.pk).maintenance_windows == []
    assert not AuditEvent.objects.filter(object_type="rolloutplan").exists()


def test_it_refuses_windows_that_are_not_a_list(release_manager, plan):
    response = release_manager.patch("/api/plans/test-plan", {"maintenance_windows": {"a": 1}}, format="json")

    assert response.json()["fields"] == {
        "maintenance_windows": ["maintenance_windows must be a list of windows."]
    }


def test_an_operator_cannot_set_windows(operator, plan, devices):
    response = operator.patch("/api/plans/test-plan", {"maintenance_windows": [BERLIN_NIGHTS]}, format="json")

    assert response.status_code == 403
    assert RolloutPlan.objects.get(pk=plan.pk).maintenance_windows == []


# --- when a device may activate ---------------------------------------------------------------


def test_a_device_in_a_berlin_window_activates_at_its_start_in_winter(manager, devices):
    # Wednesday 13 January 2027, 12:00 UTC: the next window opens Thursday 02:00 CET = 01:00 UTC.
    after = activate_after(
        manager, [{**BERLIN_NIGHTS, "weekdays": WORKDAYS}], devices["berlin"], at("2027-01-13T12:00")
    )

    assert after == at("2027-01-14T01:00")
    assert after.tzinfo == UTC


def test_the_window_start_follows_summer_time(manager, devices):
    # Friday 26 March 2027: the weekend is not in the list, and on Sunday Berlin moves to CEST, so
    # Monday's 02:00 is 00:00 UTC, not 01:00.
    after = activate_after(
        manager, [{**BERLIN_NIGHTS, "weekdays": WORKDAYS}], devices["berlin"], at("2027-03-26T12:00")
    )

    assert after == at("2027-03-29T00:00")


def test_a_device_inside_its_window_may_activate_now(manager, devices):
    # 01:30 UTC in January is 02:30 in Berlin, a Thursday.
    after = activate_after(
        manager, [{**BERLIN_NIGHTS, "weekdays": WORKDAYS}], devices["berlin"], at("2027-01-14T01:30")
    )

    assert after is None


def test_a_weekday_outside_the_list_waits_for_the_next_allowed_day(manager, devices):
    # Wednesday; the window is on Saturdays only.
    after = activate_after(
        manager, [{**BERLIN_NIGHTS, "weekdays": ["sat"]}], devices["berlin"], at("2027-01-13T12:00")
    )

    assert after == at("2027-01-16T01:00")


def test_a_window_across_midnight_still_runs_the_next_morning():
    friday_nights = [{"time_zone": "Europe/Berlin", "start": "22:00", "end": "04:00", "weekdays": ["fri"]}]

    # Saturday 03:00 in Berlin is inside Friday's night; Saturday 22:00 is not a Friday.
    assert windows_activation_start(friday_nights, at("2027-01-16T02:00")) is None
    assert windows_activation_start(friday_nights, at("2027-01-16T21:30")) == at("2027-01-22T21:00")


def test_the_start_after_summer_time_ends_is_the_first_of_the_doubled_hours():
    # Berlin leaves CEST on Sunday 31 October 2027 at 03:00, so 02:30 happens twice: the window
    # opens at the first (00:30 UTC), and on Monday at 01:30 UTC again.
    nights = [{"time_zone": "Europe/Berlin", "start": "02:30", "end": "04:00", "weekdays": ["sun", "mon"]}]

    assert windows_activation_start(nights, at("2027-10-30T12:00")) == at("2027-10-31T00:30")
    assert windows_activation_start(nights, at("2027-10-31T12:00")) == at("2027-11-01T01:30")


def test_a_sites_window_overrides_its_regions(manager, devices):
    windows = [
        {**BERLIN_NIGHTS},
        {"site": "Charité", "time_zone": "Europe/Berlin", "start": "13:00", "end": "14:00"},
    ]
    plan = plans.plan_create(
        actor=manager, name="windows", stages=[{"ring": "pilot"}], maintenance_windows=windows
    )
    rollout = lifecycle.rollout_create(release=ReleaseFactory(version="v2.1"), plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    now = at("2027-01-13T09:00")

    # The Charité opens at 13:00 CET (12:00 UTC); Lyon, elsewhere in the region, at 02:00 CET.
    assert device_desired_state(device=devices["berlin"], now=now).activate_after == at("2027-01-13T12:00")
    assert device_desired_state(device=devices["lyon"], now=now).activate_after == at("2027-01-14T01:00")


def test_a_fleet_window_covers_devices_that_no_site_or_region_window_covers(manager, devices):
    windows = [BERLIN_NIGHTS, {"time_zone": "America/New_York", "start": "01:00", "end": "03:00"}]

    # 09:00 UTC is 04:00 in New York: the next window opens at 01:00 EST = 06:00 UTC.
    after = activate_after(manager, windows, devices["boston"], at("2027-01-13T09:00"))

    assert after == at("2027-01-14T06:00")


def test_without_a_window_for_the_device_the_plans_utc_window_applies(manager, devices):
    after = activate_after(
        manager,
        [BERLIN_NIGHTS],
        devices["boston"],
        at("2027-01-13T09:00"),
        activation_window_start=dt.time(22, 0),
        activation_window_end=dt.time(23, 0),
    )

    assert after == at("2027-01-13T22:00")


def test_without_any_window_a_device_activates_now(manager, devices):
    assert activate_after(manager, [BERLIN_NIGHTS], devices["boston"], at("2027-01-13T09:00")) is None
