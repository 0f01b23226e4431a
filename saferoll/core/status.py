"""Reads about SafeRoll itself: is the autopilot alive, is the emergency stop on."""

import datetime as dt

from django.conf import settings
from django.utils import timezone

from saferoll.core.models import FleetState


def autopilot_status(now: dt.datetime | None = None) -> dict:
    """When the autopilot last finished a round, and whether that is too long ago (a dead worker or beat)."""
    now = now or timezone.now()
    state = FleetState.load()
    period = settings.SAFEROLL_AUTOPILOT_PERIOD_SECONDS
    last = state.autopilot_last_run
    age = (now - last).total_seconds() if last else None
    return {
        "last_run": last.isoformat() if last else None,
        "seconds_ago": round(age, 1) if age is not None else None,
        "period_seconds": period,
        "stale": age is None or age > period * settings.SAFEROLL_AUTOPILOT_STALE_PERIODS,
    }


def emergency_status() -> dict:
    state = FleetState.load()
    return {
        "active": state.emergency_stop,
        "reason": state.emergency_reason if state.emergency_stop else "",
        "raised_by": state.emergency_raised_by if state.emergency_stop else "",
        "raised_at": state.emergency_raised_at.isoformat()
        if state.emergency_stop and state.emergency_raised_at
        else None,
    }
