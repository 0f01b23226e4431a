"""The fleet a replay rolls out to, and how a stage's devices take the release.

Rings get their devices from the fleet's ring shares (percent of the fleet). A stage deploys the
devices of its rings (`rings`, or its `ring`); a regional stage its share of them (the plan's
regions of a ring splitting it evenly); a cohort stage 0.1 % of the fleet. Of a stage's devices a
share is silent for good (unreachable: never installs, left out of the installed share), a few fail
to install, and the others install after a lognormal time (median 90 s, most within 4 minutes),
once the plan's waves have released them. Each stage's count is a number, not a list of devices.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from rollouts.waves import waves_released_by
from rollouts.whatif.stats import binomial, lognormal_cdf, lognormal_quantile

# A cohort's size is unknown without the database: a small group, like a pilot's friendly sites.
COHORT_SHARE = 0.001
# Past this age a stage's installs are over (the lognormal's 99.99th percentile is 8 minutes).
INSTALL_SETTLED_SECONDS = 600.0


@dataclass(frozen=True)
class FleetModel:
    """The fleet's shape: its size, its rings (percent each, in rollout order), how often devices
    report, and how its devices install."""

    devices: int
    ring_shares: dict[str, float]
    heartbeat_seconds: float = 5.0
    silent_share: float = 0.01
    install_failure: float = 0.003
    install_median_seconds: float = 90.0
    install_sigma: float = 0.6

    def ring_sizes(self) -> dict[str, int]:
        """Devices per ring; the last ring takes the rounding so the rings add up to the fleet."""
        total = sum(self.ring_shares.values()) or 1.0
        names = list(self.ring_shares)
        sizes = {name: int(self.devices * self.ring_shares[name] / total) for name in names}
        if names:
            sizes[names[-1]] += self.devices - sum(sizes.values())
        return sizes

    def stage_sizes(self, stages: list[dict[str, Any]]) -> list[int]:
        sizes = self.ring_sizes()
        regions: dict[str, set[str]] = {}
        for stage in stages:
            for ring in _stage_rings(stage):
                if stage.get("region"):
                    regions.setdefault(ring, set()).add(stage["region"])
        counts = []
        for stage in stages:
            if stage.get("cohort"):
                counts.append(max(1, round(self.devices * COHORT_SHARE)))
                continue
            count = 0.0
            for ring in _stage_rings(stage):
                share = 1.0 / len(regions[ring]) if stage.get("region") and ring in regions else 1.0
                count += sizes.get(ring, 0) * share
            counts.append(round(count))
        return counts


def _stage_rings(stage: dict[str, Any]) -> list[str]:
    return list(stage.get("rings") or [stage["ring"]])


def stage_rings(stage: dict[str, Any]) -> list[str]:
    """The fleet rings a stage deploys (none for a cohort stage)."""
    return [] if stage.get("cohort") else _stage_rings(stage)


@dataclass
class StageInstall:
    """One stage's devices on the way to the release."""

    fleet: FleetModel
    started: float
    devices: int
    silent: int
    failed: int
    waves: dict[str, Any] | None
    _known: dict[float, int] = field(default_factory=dict)

    @classmethod
    def begin(
        cls, fleet: FleetModel, devices: int, started: float, waves: dict | None, rng: random.Random
    ) -> StageInstall:
        silent = round(devices * fleet.silent_share)
        failed = binomial(rng, devices - silent, fleet.install_failure)
        return cls(fleet, started, devices, silent, failed, waves or None)

    @property
    def installable(self) -> int:
        return self.devices - self.silent - self.failed

    def released(self, now: float) -> int:
        """Devices the waves have told to install by `now` (all of them at once without waves)."""
        if self.waves is None:
            return self.devices
        return waves_released_by(self.waves, self._minute(now), self.devices)

    def _minute(self, now: float) -> int:
        return max(0, int((now - self.started) // 60))

    def installed(self, now: float) -> int:
        """Devices running the release at `now`: each released wave's installable share, by the
        install-time distribution since its minute began. Asked several times a judgement: kept."""
        if now not in self._known:
            if len(self._known) > 8:
                self._known.clear()
            self._known[now] = self._installed_at(now)
        return self._known[now]

    def _installed_at(self, now: float) -> int:
        if now <= self.started or not self.devices:
            return 0
        share = self.installable / self.devices
        if self.waves is None:
            return int(self.installable * self._cdf(now - self.started))
        total, before = 0.0, 0
        for minute in range(self._minute(now) + 1):
            released = waves_released_by(self.waves, minute, self.devices)
            total += (released - before) * share * self._cdf(now - self.started - 60 * minute)
            before = released
            if released >= self.devices:
                break
        return int(total)

    def failure_rate(self, now: float) -> float | None:
        """Failed deployments among those tried: a device fails when it would have installed."""
        tried = self.installable + self.failed
        if not self.installed(now) or not tried:
            return None
        return self.failed / tried

    def _cdf(self, seconds: float) -> float:
        return lognormal_cdf(seconds, self.fleet.install_median_seconds, self.fleet.install_sigma)

    def last_release_at(self) -> float:
        """When the waves released the stage's last device (the stage's start without waves)."""
        if self.waves is None:
            return self.started
        minute = 0
        while waves_released_by(self.waves, minute, self.devices) < self.devices:
            minute += 1
        return self.started + 60 * minute

    def settled(self, now: float) -> bool:
        return now - self.last_release_at() >= INSTALL_SETTLED_SECONDS

    def ages(self, now: float, points: int = 5) -> tuple[float, ...]:
        """How long the installed devices have run the release, at `points` equal shares of them
        (waves aside: their later devices are younger than this says, for the first minutes)."""
        elapsed = now - self.started
        done = self._cdf(elapsed)
        if done <= 0:
            return (0.0,)
        median, sigma = self.fleet.install_median_seconds, self.fleet.install_sigma
        return tuple(
            max(elapsed - lognormal_quantile(done * (index + 0.5) / points, median, sigma), 0.0)
            for index in range(points)
        )

    def first_install_after(self, share: float) -> float:
        """Seconds after the stage's start when the first of `share` of its devices runs the release."""
        devices = self.installable * share
        if devices < 1:
            return math.inf
        return lognormal_quantile(1.0 / devices, self.fleet.install_median_seconds, self.fleet.install_sigma)
