"""Waves: how many of a stage's devices are told to install in each minute of the stage (a plan's
`waves`: per_minute, growth like AWS IoT Jobs' exponentialRate, max_per_minute), and how people
read it. Pure arithmetic on the frozen plan; the release itself is in services.deployments."""

import datetime as dt
import sys
from typing import Any

from django.utils import timezone

from rollouts.models import Rollout


def waves_released_by(waves: dict[str, Any], minute: int, limit: int) -> int:
    """How many of a stage's `limit` devices the waves have released by the end of `minute` (0:
    the stage's first minute): per_minute in the first, growing by `growth` each minute after,
    never more than max_per_minute in one."""
    growth = waves.get("growth", 1)
    # Without a cap the wave stops growing at a size no fleet has, which keeps the numbers finite.
    ceiling = waves.get("max_per_minute") or 10**9
    size = float(waves["per_minute"])
    total = 0
    for wave in range(minute + 1):
        current = int(min(size, ceiling))
        if growth == 1 or size >= ceiling:
            # The rate is fixed from here on: the remaining minutes at once.
            return min(limit, total + current * (minute + 1 - wave))
        total += current
        if total >= limit:
            return limit
        size *= growth
    return min(total, limit)


def first_wave(waves: dict[str, Any]) -> int:
    """How many of a stage's devices are released when the stage starts, however many it holds."""
    return waves_released_by(waves, 0, sys.maxsize)


def wave_minute(rollout: Rollout, now: dt.datetime) -> int | None:
    """The current stage's minute (0 in its first), or None before it started."""
    start = rollout.stage_started_at
    if start is None or now < start:
        return None
    return int((now - start).total_seconds() // 60)


def waves_description(waves: dict[str, Any]) -> str:
    """The plan's waves as people read them: "50/min, ×2 each minute, at most 400/min"."""
    parts = [f"{waves['per_minute']:,}/min"]
    if waves.get("growth", 1) != 1:
        parts.append(f"×{waves['growth']:g} each minute")
    if waves.get("max_per_minute") is not None:
        parts.append(f"at most {waves['max_per_minute']:,}/min")
    return ", ".join(parts)


def waves_sentence(rollout: Rollout, *, released: int, targeted: int, now: dt.datetime | None = None) -> str:
    """ "Wave 4: 150 of 1,000 devices released (50/min, ×2 each minute)", or "" without waves."""
    if not rollout.waves or not rollout.current_ring:
        return ""
    minute = wave_minute(rollout, now or timezone.now())
    head = f"Wave {minute + 1}: " if minute is not None and released < targeted else ""
    return f"{head}{released:,} of {targeted:,} devices released ({waves_description(rollout.waves)})"
