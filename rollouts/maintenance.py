"""Maintenance windows: when the devices of a site, a region or the whole fleet may activate a
release, as local times of day in the place's own time zone, on some weekdays (002 B6).

A window is a plan's JSON, as rollouts.services.plans.plan_clean_maintenance_windows checked it:
{"site" or "region" (or neither: the whole fleet), "time_zone", "start", "end", "weekdays"?}.
A window whose end is before its start spans midnight (22:00 to 04:00), and belongs to the weekday
on which it opens: a Friday night window still runs on Saturday at 03:00.

Pure Python with no Django imports, like the gate engine. Local times become UTC instants through
zoneinfo, so a window at 02:00 Berlin time opens at 01:00 UTC in winter and 00:00 UTC in summer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Most specific first: a site's window overrides its region's, which overrides the fleet's.
SCOPES = ("site", "region")


def parse_time_of_day(text: Any) -> dt.time | None:
    """ "HH:MM" (24-hour) as a time, or None when it is not one."""
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        return None
    hours, minutes = text[:2], text[3:]
    if not (hours.isascii() and hours.isdigit() and minutes.isascii() and minutes.isdigit()):
        return None
    if int(hours) > 23 or int(minutes) > 59:
        return None
    return dt.time(int(hours), int(minutes))


def window_scope(window: dict[str, Any]) -> str:
    """ "site", "region" or "fleet"."""
    return next((scope for scope in SCOPES if window.get(scope)), "fleet")


def device_windows(windows: list[dict[str, Any]], *, site: str, region: str) -> list[dict[str, Any]]:
    """The windows that govern a device: those of its site when there are any, else those of its
    region, else the fleet-wide ones; empty when none applies."""
    of_site = [window for window in windows if window_scope(window) == "site" and window["site"] == site]
    if of_site:
        return of_site
    of_region = [
        window for window in windows if window_scope(window) == "region" and window["region"] == region
    ]
    if of_region:
        return of_region
    return [window for window in windows if window_scope(window) == "fleet"]


def windows_activation_start(windows: list[dict[str, Any]], now: dt.datetime) -> dt.datetime | None:
    """None when `now` is inside one of the windows, else the next time one opens (UTC)."""
    now_utc = now.astimezone(dt.UTC)
    openings = []
    for window in windows:
        for opens, closes in _occurrences(window, now_utc):
            if opens <= now_utc < closes:
                return None
            if opens > now_utc:
                openings.append(opens)
    # Every window has at least one weekday, so it opens within the next eight days.
    return min(openings)


def _occurrences(window: dict[str, Any], now_utc: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """(opens, closes) in UTC of the window's occurrences from the local day before `now` (whose
    night may still be running) to eight days after it (so every weekday comes up once)."""
    zone = ZoneInfo(window["time_zone"])
    start = parse_time_of_day(window["start"])
    end = parse_time_of_day(window["end"])
    assert start is not None and end is not None, "a stored window has been checked"
    weekdays = {WEEKDAYS.index(day) for day in window.get("weekdays") or WEEKDAYS}
    today = now_utc.astimezone(zone).date()
    occurrences = []
    for offset in range(-1, 9):
        day = today + dt.timedelta(days=offset)
        if day.weekday() not in weekdays:
            continue
        closing_day = day + dt.timedelta(days=1) if end < start else day
        # Compared in UTC: aware datetimes sharing one tzinfo compare by wall time, which is wrong
        # across a change to or from summer time.
        opens = dt.datetime.combine(day, start, tzinfo=zone).astimezone(dt.UTC)
        closes = dt.datetime.combine(closing_day, end, tzinfo=zone).astimezone(dt.UTC)
        occurrences.append((opens, closes))
    return occurrences
