"""What a simulated run rolls out and what happens around it: the release mix, the outside events,
and the health a device reports in each condition.

Healthy devices are those of the simulator (simulator/health.py, 000 §8.3 with its one change):
crash rate per check triangular on [0, 0.02] with its peak at 0 (crash-free mean 0.9933), a failed
boot in 0.1 % of checks, latency 50 ± 20 ms. A fault of crash rate R adds R to the crash rate,
fails boots with probability min(0.5, max(0.001, 150 R²)) and slows latency by (1 + 40 R), and its
patterns (000 §9.5) are the simulator's: immediate, gradual (R·(t/180 s)², capped at 2R) and network
(latency to 2 s over a minute, then 60 % of the devices silent by the third minute). The numbers are
restated here because the replay sits below the simulator in the layers and may not import it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

HEALTHY_CRASH_RATE = 0.02 / 3
# Variance of the triangular crash rate per check, split evenly between devices (each has its own
# mean) and checks of one device; latency likewise: uniform ±20 ms has a variance of 20²/3.
CRASH_VARIANCE = 0.02**2 / 18
LATENCY_VARIANCE = 20.0**2 / 3
BETWEEN_DEVICES = 0.5
HEALTHY_BOOT_FAILURE = 0.001
HEALTHY_LATENCY_MS = 50.0
LATENCY_GROWTH_PER_RATE = 40.0

GRADUAL_RAMP_SECONDS = 180.0
GRADUAL_OVERSHOOT = 2.0
NETWORK_LATENCY_MS = 2000.0
NETWORK_LATENCY_SD_MS = 300.0 / math.sqrt(3)
NETWORK_SPIKE_SECONDS = 60.0
NETWORK_SILENCE_START_SECONDS = 120.0
NETWORK_SILENCE_FULL_SECONDS = 180.0
NETWORK_SILENT_SHARE = 0.6
# After this long on the release every pattern has reached its plateau.
PATTERN_SETTLED_SECONDS = 300.0

# Hardware variants of the fleet and their shares; a release may hurt one of them only.
VARIANTS = {"A": 0.60, "B": 0.25, "C": 0.15}


@dataclass(frozen=True)
class Condition:
    """How a share of a group's devices is doing: per-check means and latency spread."""

    weight: float
    crash_rate: float = HEALTHY_CRASH_RATE
    boot_failure: float = HEALTHY_BOOT_FAILURE
    latency_ms: float = HEALTHY_LATENCY_MS
    latency_var: float = LATENCY_VARIANCE
    # Share of these devices that cannot reach SafeRoll.
    silent: float = 0.0

    @property
    def fault_rate(self) -> float:
        return max(self.crash_rate - HEALTHY_CRASH_RATE, 0.0)


def faulty(weight: float, rate: float, *, boot_failure: float | None = None) -> Condition:
    """Devices with an injected crash rate `rate`, as the simulator makes them."""
    factor = 1.0 + LATENCY_GROWTH_PER_RATE * rate
    boot = min(0.5, max(HEALTHY_BOOT_FAILURE, 150.0 * rate * rate))
    return Condition(
        weight=weight,
        crash_rate=HEALTHY_CRASH_RATE + rate,
        boot_failure=boot if boot_failure is None else boot_failure,
        latency_ms=HEALTHY_LATENCY_MS * factor,
        latency_var=LATENCY_VARIANCE * factor * factor,
    )


@dataclass(frozen=True)
class ReleaseKind:
    """A release the replay rolls out. `rate` is the injected crash rate; `variant` limits the harm
    to devices of one hardware variant; `boot_failure` replaces the boot failure the rate implies."""

    name: str
    weight: float
    rate: float = 0.0
    pattern: str = "immediate"
    boot_failure: float | None = None
    variant: str | None = None
    description: str = ""

    @property
    def bad(self) -> bool:
        return self.name != "good"

    def conditions(self, ages: tuple[float, ...]) -> list[Condition]:
        """The release's devices by how long they have run it (`ages`, one per equal share)."""
        if not self.bad:
            return [Condition(weight=1.0)]
        share = 1.0 / len(ages)
        hurt = [self._at_age(share, age) for age in ages]
        if self.variant is None:
            return hurt
        spared = VARIANTS[self.variant]
        return [Condition(weight=1.0 - spared)] + [replace(c, weight=c.weight * spared) for c in hurt]

    def _at_age(self, weight: float, age: float) -> Condition:
        if self.pattern == "gradual":
            rate = min(GRADUAL_OVERSHOOT * self.rate, self.rate * (max(age, 0.0) / GRADUAL_RAMP_SECONDS) ** 2)
            return faulty(weight, rate, boot_failure=self.boot_failure)
        condition = faulty(weight, self.rate, boot_failure=self.boot_failure)
        if self.pattern != "network":
            return condition
        climb = min(max(age, 0.0) / NETWORK_SPIKE_SECONDS, 1.0)
        latency = condition.latency_ms + (NETWORK_LATENCY_MS - condition.latency_ms) * climb
        silence_span = NETWORK_SILENCE_FULL_SECONDS - NETWORK_SILENCE_START_SECONDS
        silent = NETWORK_SILENT_SHARE * min(max(age - NETWORK_SILENCE_START_SECONDS, 0.0) / silence_span, 1.0)
        sd = math.sqrt(condition.latency_var) if climb < 1 else NETWORK_LATENCY_SD_MS
        return replace(condition, latency_ms=latency, latency_var=sd * sd, silent=silent)


# The mix of releases a run draws from, by weight. Half are good: the false-halt figure needs as
# many runs as the detection figures. The bad half covers 000 §9.5's patterns at several
# severities, a regression only a baseline can see, boot failures alone, and one hardware variant.
RELEASE_MIX: tuple[ReleaseKind, ...] = (
    ReleaseKind("good", 0.50, description="healthy: the fleet's own distributions"),
    ReleaseKind("critical", 0.07, rate=0.15, description="immediate catastrophe (000 §9.5): crash-free 85 %"),
    ReleaseKind("moderate", 0.07, rate=0.01, description="immediate, crash-free 98.3 %: the PAUSE band"),
    ReleaseKind("gradual", 0.07, rate=0.03, pattern="gradual", description="000 §9.5 gradual, to 94 %"),
    ReleaseKind(
        "network", 0.07, pattern="network", description="000 §9.5 network: 2 s latency, then silence"
    ),
    ReleaseKind(
        "small_regression",
        0.07,
        rate=0.003,
        description="crash rate +0.3 points (0.67 % → 0.97 %), still above a 99 % gate",
    ),
    ReleaseKind("boot_only", 0.07, boot_failure=0.02, description="2 % of boots fail, nothing else"),
    ReleaseKind(
        "one_variant", 0.08, rate=0.05, variant="C", description="crash rate +5 points on variant C (15 %)"
    ),
)


def draw_release(rng: random.Random) -> ReleaseKind:
    return rng.choices(RELEASE_MIX, weights=[kind.weight for kind in RELEASE_MIX])[0]


@dataclass(frozen=True)
class OutsideEvent:
    """Something that hits old and new versions alike: `share` of the devices (a site outage: the
    devices of the sites down) report `latency_ms` and `silent` of them cannot reach SafeRoll."""

    kind: str
    start: float
    duration: float
    share: float
    latency_ms: float
    silent: float

    @property
    def end(self) -> float:
        return self.start + self.duration

    def active(self, now: float) -> bool:
        return self.start <= now < self.end

    def apply(self, conditions: list[Condition]) -> list[Condition]:
        """The conditions of a group while the event lasts: the devices hit are slow and partly silent."""
        hit: list[Condition] = []
        for condition in conditions:
            slowed = replace(
                condition,
                weight=condition.weight * self.share,
                latency_ms=max(condition.latency_ms, self.latency_ms),
                latency_var=max(condition.latency_var, (0.2 * self.latency_ms) ** 2),
                silent=1.0 - (1.0 - condition.silent) * (1.0 - self.silent),
            )
            hit.append(slowed)
            if self.share < 1.0:
                hit.append(replace(condition, weight=condition.weight * (1.0 - self.share)))
        return hit


# A site holds this many devices on average; a site outage takes down a share of the sites.
SITE_SIZE = 150


def draw_event(rng: random.Random, fleet: int, horizon: float) -> OutsideEvent:
    """A site network outage or a fleet-wide latency spike, at a random moment of the run, for minutes."""
    start = rng.uniform(0.0, horizon)
    if rng.random() < 0.5:
        sites = max(1, round(fleet / SITE_SIZE))
        down = max(1, round(sites * rng.uniform(0.02, 0.25)))
        return OutsideEvent(
            kind="site_outage",
            start=start,
            duration=rng.uniform(3, 30) * 60,
            share=down / sites,
            latency_ms=rng.uniform(800, 2000),
            silent=rng.uniform(0.3, 0.9),
        )
    return OutsideEvent(
        kind="latency_spike",
        start=start,
        duration=rng.uniform(2, 15) * 60,
        share=1.0,
        latency_ms=rng.uniform(600, 1500),
        silent=0.0,
    )
