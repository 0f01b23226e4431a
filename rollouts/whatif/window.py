"""A group of devices reporting health, kept as per-bucket aggregates rather than devices.

Each bucket (10 s of the simulated clock, or longer while nothing changes) holds what the group's
checks of that span add up to: how many devices reported, checks, the sum of crash rates, failed
boots, the median latency and the across-device variances. The counts are drawn from binomial and
normal approximations of the sums of the devices' checks, so a bucket costs the same for ten
devices or a million. A window is the buckets of its last `window_minutes`; RingHealth comes from
their sums, the median latency from the buckets' medians weighted by their checks.

Devices are not independent draws every bucket: each has its own mean (half the variance of a
check is between devices), so a group's devices are better or worse than the fleet's mean by a
deviation fixed for the run (`Offsets`), shrinking with the square root of the group's size.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from rollouts.whatif.scenarios import BETWEEN_DEVICES, CRASH_VARIANCE, Condition
from rollouts.whatif.stats import MEDIAN_EFFICIENCY, binomial, mixture_median, weighted_median
from telemetry.health import DeviceSpread, RingHealth

WITHIN_CRASH_VARIANCE = CRASH_VARIANCE * (1 - BETWEEN_DEVICES)


@dataclass(frozen=True)
class Offsets:
    """A group's standard-normal deviations of its devices' own means from the fleet's."""

    crash: float
    latency: float

    @classmethod
    def draw(cls, rng: random.Random) -> Offsets:
        return cls(crash=rng.gauss(0.0, 1.0), latency=rng.gauss(0.0, 1.0))


@dataclass(frozen=True)
class Bucket:
    end: float
    devices: int
    checks: int
    crash_sum: float
    boot_failures: int
    latency_median: float
    latency_sum: float
    # Across-device variances of the devices' means, times checks (so they add up over buckets).
    crash_between: float
    latency_between: float
    # What a device's checks scatter around its own latency mean, times checks.
    latency_within: float
    availability_sum: float
    # The event lag is a function of the fault alone (simulator/health.py): its mean is its median.
    event_lag_sum: float
    dropped_sum: float


def draw_bucket(
    rng: random.Random,
    *,
    end: float,
    seconds: float,
    heartbeat: float,
    devices: int,
    conditions: list[Condition],
    offsets: Offsets,
) -> Bucket | None:
    """What `devices` in `conditions` report over `seconds` ending at `end`; None when nobody does."""
    reporting = [(c, c.weight * (1.0 - c.silent)) for c in conditions]
    share = sum(weight for _, weight in reporting)
    count = round(devices * share)
    if count <= 0:
        return None
    checks = max(count, round(count * seconds / heartbeat))
    weights = [(c, weight / share) for c, weight in reporting if weight > 0]
    crash_mean = sum(w * c.crash_rate for c, w in weights)
    latency_mean = sum(w * c.latency_ms for c, w in weights)
    fault = sum(w * c.fault_rate for c, w in weights)
    latency_var = sum(w * c.latency_var for c, w in weights)
    # The group's devices, each with its own mean: a deviation fixed for the run.
    crash_shift = offsets.crash * math.sqrt(CRASH_VARIANCE * BETWEEN_DEVICES / count)
    latency_shift = offsets.latency * math.sqrt(latency_var * BETWEEN_DEVICES / count)
    crash_sum = checks * (crash_mean + crash_shift) + rng.gauss(
        0.0, math.sqrt(WITHIN_CRASH_VARIANCE * checks)
    )
    median = mixture_median([(w, c.latency_ms, math.sqrt(c.latency_var)) for c, w in weights])
    median_noise = MEDIAN_EFFICIENCY * math.sqrt(latency_var / checks)
    crash_between = CRASH_VARIANCE * BETWEEN_DEVICES + sum(
        w * (c.crash_rate - crash_mean) ** 2 for c, w in weights
    )
    latency_between = sum(
        w * (c.latency_var * BETWEEN_DEVICES + (c.latency_ms - latency_mean) ** 2) for c, w in weights
    )
    return Bucket(
        end=end,
        devices=count,
        checks=checks,
        crash_sum=max(crash_sum, 0.0),
        boot_failures=binomial(rng, checks, sum(w * c.boot_failure for c, w in weights)),
        latency_median=max(1.0, median + latency_shift + rng.gauss(0.0, median_noise)),
        latency_sum=checks * (latency_mean + latency_shift),
        crash_between=crash_between * checks,
        latency_between=latency_between * checks,
        latency_within=latency_var * (1 - BETWEEN_DEVICES) * checks,
        # The simulator's other measures degrade in proportion to the fault (simulator/health.py).
        availability_sum=checks * min(1.0, max(0.0, 0.999 - fault / 2)),
        event_lag_sum=checks * 500.0 * (1.0 + 20.0 * fault),
        dropped_sum=checks * (0.03 + 5.0 * fault) * (2.0 + 100.0 * fault),
    )


class Window:
    """The buckets of a group over the last `minutes`, with running sums of what adds up."""

    _SUMMED = (
        "checks",
        "crash_sum",
        "boot_failures",
        "latency_sum",
        "crash_between",
        "latency_between",
        "latency_within",
        "availability_sum",
        "event_lag_sum",
        "dropped_sum",
    )

    def __init__(self, minutes: int):
        self.seconds = minutes * 60
        self.minutes = minutes
        # Each bucket with the scale it was added at: what remains of it is scale / that.
        self.buckets: deque[tuple[Bucket, float]] = deque()
        self.sums = dict.fromkeys(self._SUMMED, 0.0)
        self.scale = 1.0

    def add(self, bucket: Bucket | None, now: float) -> None:
        if bucket is not None:
            self.buckets.append((bucket, self.scale))
            for key in self._SUMMED:
                self.sums[key] += getattr(bucket, key)
        while self.buckets and self.buckets[0][0].end <= now - self.seconds:
            old, added_at = self.buckets.popleft()
            remaining = self.scale / added_at
            for key in self._SUMMED:
                self.sums[key] -= getattr(old, key) * remaining

    def keep(self, share: float) -> None:
        """Only `share` of the group's devices are still in it (the others installed the release):
        their checks stay in the window, the others' leave with them, as the baseline selector
        reads only devices still off the release. Devices leave at random, so every bucket keeps
        the same share."""
        if share >= 1.0:
            return
        if share <= 0.0:
            self.clear()
            return
        self.scale *= share
        for key in self._SUMMED:
            self.sums[key] *= share

    def clear(self) -> None:
        self.buckets.clear()
        self.sums = dict.fromkeys(self._SUMMED, 0.0)
        self.scale = 1.0

    def _weighted(self) -> list[tuple[Bucket, float]]:
        """The buckets with the share of each still in the window."""
        return [(bucket, self.scale / added_at) for bucket, added_at in self.buckets]

    def health(self, rng: random.Random, *, ring: str, expected: int | None) -> RingHealth:
        """The window as the selectors would aggregate it. A device counts once however many of the
        window's buckets it reported in; devices that fall silent are the same devices throughout
        (a site stays down), so the window's devices are its fullest bucket's."""
        checks = round(self.sums["checks"])
        if not self.buckets or checks <= 0:
            return RingHealth(ring=ring, window_minutes=self.minutes, expected_devices=expected, checks=0)
        weighted = self._weighted()
        devices = max(1, round(max(bucket.devices * kept for bucket, kept in weighted)))
        crash = self.sums["crash_sum"] / checks
        latency_mean = self.sums["latency_sum"] / checks
        per_device = checks / devices
        return RingHealth(
            ring=ring,
            total_devices=devices,
            crash_free_rate=min(1.0, max(0.0, 1.0 - crash)),
            boot_success_rate=1.0 - self.sums["boot_failures"] / checks,
            median_latency_ms=weighted_median((b.latency_median, b.checks * kept) for b, kept in weighted),
            window_minutes=self.minutes,
            expected_devices=expected,
            checks=checks,
            availability=self.sums["availability_sum"] / checks,
            event_lag_ms=self.sums["event_lag_sum"] / checks,
            dropped_events=self.sums["dropped_sum"] / checks,
            spread=DeviceSpread(
                devices=devices,
                crash_rate_mean=crash,
                crash_rate_var=_sample_variance(
                    rng, self.sums["crash_between"] / checks + WITHIN_CRASH_VARIANCE / per_device, devices
                ),
                latency_mean=latency_mean,
                latency_var=_sample_variance(
                    rng,
                    (self.sums["latency_between"] + self.sums["latency_within"] / per_device) / checks,
                    devices,
                ),
            ),
        )


def _sample_variance(rng: random.Random, variance: float, devices: int) -> float:
    """A sample variance over `devices`: chi-squared around the true one, here by its normal approximation."""
    if devices < 2:
        return 0.0
    return max(0.0, variance * (1.0 + math.sqrt(2.0 / (devices - 1)) * rng.gauss(0.0, 1.0)))
