"""The simulated devices' health: what a check says, healthy or with an injected failure.

Healthy device (000 §8.3, with one deliberate change):
    crash_free          in [0.98, 1.00], triangular with its peak at 1.00 (mean ≈ 0.9933)
    boot_ok             false with probability 0.001
    checkin_latency_ms  50 ± 20 (uniform)
    availability        0.998 – 1.000;  event_lag_ms 200 – 800;  dropped_events 0 in 97 % of checks

    The change: 000 §8.3 centres crash-free on 0.99 ± 0.01, which is exactly the 0.99 gate, so half
    of all healthy windows would come out PAUSE and the happy path could not be demonstrated. The
    range stays [0.98, 1.00]; only its weight moves towards 1.0, so a healthy ring clears the gate
    by 0.0033, many standard errors of even a 50-device window.

Injected failure with crash rate R (the rate the pattern gives at this moment):
    crash_free          healthy draw − R, clipped to [0, 1]   (≈ 1 − R ± 0.01)
    boot failure        p(R) = min(0.5, max(0.001, 150 · R²))
    latency             (50 ± 20) · (1 + 40 · R)
    availability, event lag and dropped events degrade in proportion to R.

Why these numbers, against the server's default gates (crash-free ≥ 0.99, critical < 0.95;
boot success ≥ 0.995, critical < 0.97; median latency ≤ 500 ms; a 5-minute window of checks):

    R       crash-free   boot success   latency   decision
    0       0.9933       0.999          50 ms     PROMOTE
    0.01    0.9833       0.985          70 ms     PAUSE    (both gates fail, neither critical)
    0.025   0.9683       0.906          100 ms    ROLLBACK (boot success critical)
    0.03    0.9633       0.865          110 ms    ROLLBACK (boot success critical)
    0.05    0.9433       0.625          150 ms    ROLLBACK (both critical)

    Boot failures are what turn "clearly bad" into "critical": crash-free alone only becomes
    critical above R ≈ 0.045, and 000 §11.2 expects 0.03 to roll back. The quadratic keeps
    R = 0.01 well inside the PAUSE band (0.985 is 0.015 from either boundary) and reproduces the
    "10 % of devices fail to boot" that 000 §8.3 gives for R = 0.025. The gates call boot success
    critical only when they are sure of it (the 95 % interval of the window's checks lies below
    97 %): even with five minutes of healthy checks in the window, R = 0.03 gets there once about
    a quarter of the window is injected, about 80 s after `inject`, plus the autopilot's period.

Failure patterns (000 §9.5), as the crash rate and latency over time since injection:
    immediate   the rate at once (default).
    gradual     rate · (t / 180 s)², capped at twice the rate: 0.99 crash-free after one minute
                on a 0.03 injection, 0.98 after two, 0.963 after three, 0.94 after four, then it
                levels off: the seed's drift "to the target and beyond".
    network     latency climbs to ~2000 ms over the first minute and stays there (the rate, if
                any, applies throughout: network trouble and crashes are correlated); from the
                second minute a growing share of devices stops reaching the server, 60 % by the
                third. Silent devices buffer their checks and resync when the fault is cleared.

Custom KPIs (001: disk, thermal, crash loops), sent in each check's `metrics`:
    disk_free_pct   healthy 40 – 90 (uniform); − 400 · R under a fault (crash dumps and logs fill
                    the disk: 12 points less at R = 0.03), clipped to [0, 100]
    temperature_c   healthy 38 – 52 °C (uniform); + 300 · R under a fault (a crashing app that
                    restarts keeps the CPU busy: + 9 °C at R = 0.03)
    crash_loops     restarts in a crash loop since the last check: 1 – 3 with probability
                    min(0.9, 0.002 + 20 · R), else 0 (mean 0.004 healthy, 0.4 at R = 0.01)
    They are drawn from a generator of their own, so adding them changed none of the built-in
    figures a seeded run produces (and so no demo's outcome).

Pure: no Django, no I/O; the random generator and the clock are passed in.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from enum import StrEnum

HEALTHY_CRASH_FREE_LOW = 0.98
HEALTHY_BOOT_FAILURE = 0.001
BOOT_FAILURE_CAP = 0.5
BOOT_FAILURE_PER_RATE_SQUARED = 150.0
HEALTHY_LATENCY_MS = 50.0
HEALTHY_LATENCY_SPREAD_MS = 20.0
LATENCY_GROWTH_PER_RATE = 40.0

GRADUAL_RAMP_SECONDS = 180.0
GRADUAL_OVERSHOOT = 2.0
NETWORK_LATENCY_MS = 2000.0
NETWORK_LATENCY_SPREAD_MS = 300.0
NETWORK_SPIKE_SECONDS = 60.0
NETWORK_SILENCE_START_SECONDS = 120.0
NETWORK_SILENCE_FULL_SECONDS = 180.0
NETWORK_SILENT_SHARE = 0.6

HEALTHY_DISK_FREE_PCT = (40.0, 90.0)
DISK_FILL_PER_RATE = 400.0
HEALTHY_TEMPERATURE_C = (38.0, 52.0)
TEMPERATURE_PER_RATE = 300.0
HEALTHY_CRASH_LOOP = 0.002
CRASH_LOOP_PER_RATE = 20.0
CRASH_LOOP_CAP = 0.9


class Pattern(StrEnum):
    IMMEDIATE = "immediate"
    GRADUAL = "gradual"
    NETWORK = "network"


@dataclass(frozen=True)
class Condition:
    """How unwell a device is at one moment."""

    crash_rate: float = 0.0
    latency_ms: float = HEALTHY_LATENCY_MS
    latency_spread_ms: float = HEALTHY_LATENCY_SPREAD_MS
    # The device cannot reach the server (network pattern): it keeps measuring and buffers.
    silent: bool = False


HEALTHY = Condition()


@dataclass(frozen=True)
class HealthSample:
    """What one check reports (the payload minus identity and time)."""

    boot_ok: bool
    crash_free: float
    checkin_latency_ms: int
    availability: float
    event_lag_ms: int
    dropped_events: int
    # Custom KPIs by name; empty when the caller draws none (sample's metrics_rng).
    metrics: dict[str, float] = field(default_factory=dict)


def boot_failure_probability(crash_rate: float) -> float:
    return min(BOOT_FAILURE_CAP, max(HEALTHY_BOOT_FAILURE, BOOT_FAILURE_PER_RATE_SQUARED * crash_rate**2))


def latency_for(crash_rate: float) -> tuple[float, float]:
    """Mean and half-width of the latency draw at a crash rate: slower as the device struggles."""
    factor = 1.0 + LATENCY_GROWTH_PER_RATE * crash_rate
    return HEALTHY_LATENCY_MS * factor, HEALTHY_LATENCY_SPREAD_MS * factor


def condition_for_rate(crash_rate: float) -> Condition:
    mean, spread = latency_for(crash_rate)
    return Condition(crash_rate=crash_rate, latency_ms=mean, latency_spread_ms=spread)


def _clip(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(high, max(low, value))


def sample(
    rng: random.Random, condition: Condition = HEALTHY, *, metrics_rng: random.Random | None = None
) -> HealthSample:
    """One check's worth of health for a device in `condition`, with the custom KPIs drawn from
    `metrics_rng` when one is given (a separate generator leaves `rng`'s sequence as it was)."""
    rate = condition.crash_rate
    crash_free = _clip(rng.triangular(HEALTHY_CRASH_FREE_LOW, 1.0, 1.0) - rate)
    boot_ok = rng.random() >= boot_failure_probability(rate)
    latency = rng.uniform(
        condition.latency_ms - condition.latency_spread_ms, condition.latency_ms + condition.latency_spread_ms
    )
    availability = _clip(rng.uniform(0.998, 1.0) - rate / 2)
    event_lag = rng.uniform(200.0, 800.0) * (1.0 + 20.0 * rate)
    dropped = 0
    if rng.random() < 0.03 + 5.0 * rate:
        dropped = rng.randint(1, 3 + int(200 * rate))
    return HealthSample(
        boot_ok=boot_ok,
        crash_free=round(crash_free, 4),
        checkin_latency_ms=max(1, round(latency)),
        availability=round(availability, 4),
        event_lag_ms=round(event_lag),
        dropped_events=dropped,
        metrics=sample_metrics(metrics_rng, condition) if metrics_rng is not None else {},
    )


def sample_metrics(rng: random.Random, condition: Condition = HEALTHY) -> dict[str, float]:
    """The custom KPIs of one check for a device in `condition` (see the module's docstring)."""
    rate = condition.crash_rate
    disk = _clip(rng.uniform(*HEALTHY_DISK_FREE_PCT) - DISK_FILL_PER_RATE * rate, 0.0, 100.0)
    temperature = rng.uniform(*HEALTHY_TEMPERATURE_C) + TEMPERATURE_PER_RATE * rate
    loops = 0
    if rng.random() < min(CRASH_LOOP_CAP, HEALTHY_CRASH_LOOP + CRASH_LOOP_PER_RATE * rate):
        loops = rng.randint(1, 3)
    return {"disk_free_pct": round(disk, 1), "temperature_c": round(temperature, 1), "crash_loops": loops}


def gradual_rate(target: float, elapsed: float) -> float:
    """Crash rate of the gradual pattern `elapsed` seconds after injection."""
    if elapsed <= 0:
        return 0.0
    return min(GRADUAL_OVERSHOOT * target, target * (elapsed / GRADUAL_RAMP_SECONDS) ** 2)


def network_latency(elapsed: float, base_ms: float) -> float:
    """Mean latency of the network pattern: a linear climb to the spike, then a plateau."""
    if elapsed >= NETWORK_SPIKE_SECONDS:
        return NETWORK_LATENCY_MS
    share = max(0.0, elapsed) / NETWORK_SPIKE_SECONDS
    return base_ms + (NETWORK_LATENCY_MS - base_ms) * share


def network_silent_share(elapsed: float) -> float:
    """Share of the affected devices that can no longer reach the server."""
    if elapsed <= NETWORK_SILENCE_START_SECONDS:
        return 0.0
    span = NETWORK_SILENCE_FULL_SECONDS - NETWORK_SILENCE_START_SECONDS
    return NETWORK_SILENT_SHARE * min(1.0, (elapsed - NETWORK_SILENCE_START_SECONDS) / span)


def pattern_condition(pattern: Pattern, target: float, elapsed: float, device_key: float) -> Condition:
    """The condition a fault of `pattern` puts a device in, `elapsed` seconds after injection.

    `device_key` is the device's stable number in [0, 1): the network pattern silences the devices
    with the lowest keys, so the same devices stay silent as the share grows."""
    if pattern is Pattern.GRADUAL:
        return condition_for_rate(gradual_rate(target, elapsed))
    if pattern is Pattern.NETWORK:
        base_mean, base_spread = latency_for(target)
        mean = network_latency(elapsed, base_mean)
        spread = base_spread if elapsed < NETWORK_SPIKE_SECONDS else NETWORK_LATENCY_SPREAD_MS
        return Condition(
            crash_rate=target,
            latency_ms=mean,
            latency_spread_ms=spread,
            silent=device_key < network_silent_share(elapsed),
        )
    return condition_for_rate(target)


def stable_unit(text: str) -> float:
    """A number in [0, 1) fixed by `text` (a device id): same device, same number, every run."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Fault:
    """An injected failure: devices of a ring, or devices running a version, are unwell."""

    rate: float
    pattern: Pattern
    started_at: float
    ring: str | None = None
    version: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return ("version", self.version) if self.version is not None else ("ring", self.ring or "")

    def matches(self, ring: str | None, version: str) -> bool:
        if self.version is not None:
            return version == self.version
        return ring == self.ring

    def describe(self, now: float) -> str:
        target = f"version {self.version}" if self.version is not None else f"ring {self.ring}"
        return (
            f"{target}: rate {self.rate:g} {self.pattern.value} (for {max(0.0, now - self.started_at):.0f} s)"
        )


def combine(conditions: list[Condition]) -> Condition:
    """A device hit by several faults is as unwell as the worst of each measure."""
    if not conditions:
        return HEALTHY
    worst_latency = max(conditions, key=lambda c: c.latency_ms)
    return Condition(
        crash_rate=max(c.crash_rate for c in conditions),
        latency_ms=worst_latency.latency_ms,
        latency_spread_ms=worst_latency.latency_spread_ms,
        silent=any(c.silent for c in conditions),
    )


@dataclass
class FaultBook:
    """The faults in force. Injecting for a target that already has one replaces it."""

    faults: dict[tuple[str, str], Fault] = field(default_factory=dict)

    def inject(
        self,
        rate: float,
        *,
        now: float,
        ring: str | None = None,
        version: str | None = None,
        pattern: Pattern = Pattern.IMMEDIATE,
    ) -> Fault:
        if (ring is None) == (version is None):
            raise ValueError("A fault targets either a ring or a version.")
        if not (0.0 <= rate <= 1.0) or math.isnan(rate):
            raise ValueError("The crash rate is a share between 0 and 1.")
        fault = Fault(rate=rate, pattern=pattern, started_at=now, ring=ring, version=version)
        self.faults[fault.key] = fault
        return fault

    def clear(self, *, ring: str | None = None, version: str | None = None) -> int:
        """Remove the faults of a target, or all of them; returns how many were removed."""
        if ring is None and version is None:
            removed = len(self.faults)
            self.faults.clear()
            return removed
        key = ("version", version) if version is not None else ("ring", ring or "")
        return 1 if self.faults.pop(key, None) else 0

    def condition_for(self, *, ring: str | None, version: str, now: float, device_key: float) -> Condition:
        return combine(
            [
                pattern_condition(fault.pattern, fault.rate, now - fault.started_at, device_key)
                for fault in self.faults.values()
                if fault.matches(ring, version)
            ]
        )

    def describe(self, now: float) -> list[str]:
        return [fault.describe(now) for fault in self.faults.values()]
