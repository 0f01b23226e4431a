"""One simulated rollout: the plan's stages on a simulated clock, judged by the real gate engine
(rollouts.gates.evaluate) and moved by the real autopilot policy (rollouts.policy.autopilot_move).

Every autopilot period (10 s) the current stage's devices on the release add a bucket of health,
so do the devices still on the previous release (the baseline: sites mix rings, so they are the
same sites), and the engine judges the stage's window against its install progress, its bake
(from when its installed share was first met, as rollouts.selectors.rollout_bake_clock) and the
baseline. Once a stage is fully installed, its release's pattern has settled and no outside event
is near, the window's make-up no longer changes: the clock then moves a minute per judgement, or a
tenth of the window when that is longer (buckets of that length), which keeps a production
rollout's days of bake cheap. Fewer judgements can miss a failing streak shorter than the step; a
stationary window moves by a tenth of itself per step, so its failures last longer than that.

A stage without auto-advance is promoted by a release manager who promotes as soon as the gates
say PROMOTE and the bake is done. PAUSE or ROLLBACK ends the run: halted.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from typing import Any

from rollouts.gates import (
    DEFAULT_MIN_INSTALLED_SHARE,
    BakeClock,
    Baseline,
    GateConfig,
    InstallProgress,
    Signals,
    evaluate,
)
from rollouts.policy import Step, autopilot_move
from rollouts.whatif.fleet import FleetModel, StageInstall, stage_rings
from rollouts.whatif.scenarios import VARIANTS, Condition, OutsideEvent, ReleaseKind
from rollouts.whatif.window import Offsets, Window, draw_bucket

AUTOPILOT_PERIOD_SECONDS = 10
# While nothing changes, a judgement a minute, or a tenth of the window when that is longer.
STATIONARY_STEP_SECONDS = 60
STATIONARY_STEPS_PER_WINDOW = 10
# A stage that has not decided this long after its bake is stuck (e.g. WAIT for ever).
STAGE_GRACE_SECONDS = 2 * 3600
# The ring the safety figure is about: a bad release must be halted before reaching it.
GUARD_RING = "ring_25"
_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
VERSION = "candidate"


@dataclass(frozen=True)
class WhatIfPlan:
    """What the replay needs of a rollout plan."""

    name: str
    stages: list[dict[str, Any]]
    gate_config: dict[str, Any] = field(default_factory=dict)
    waves: dict[str, Any] | None = None

    def guard_stage(self, ring_shares: dict[str, float]) -> int | None:
        """The index of the stage that deploys GUARD_RING; without it, the first stage that takes
        the deployed share past a quarter of the fleet."""
        for index, stage in enumerate(self.stages):
            if GUARD_RING in stage_rings(stage):
                return index
        total, deployed = sum(ring_shares.values()) or 1.0, 0.0
        for index, stage in enumerate(self.stages):
            deployed += sum(ring_shares.get(ring, 0.0) for ring in stage_rings(stage))
            if deployed / total > 0.25:
                return index
        return None

    def expected_seconds(self) -> float:
        """How long a good rollout takes: every bake plus a stage's install (most devices within
        four minutes). Outside events happen at a random moment of it."""
        return sum(stage.get("bake_minutes", 0) * 60 + 240 for stage in self.stages)

    def horizon_seconds(self) -> float:
        """The longest a run lasts: every bake plus time to install and decide in each stage."""
        return sum(stage.get("bake_minutes", 0) * 60 + STAGE_GRACE_SECONDS for stage in self.stages)


@dataclass(frozen=True)
class RunResult:
    index: int
    release: str
    bad: bool
    event: str | None
    # rollback, pause (halted), completed, or unfinished (no decision within the horizon).
    outcome: str
    stage_index: int
    stage: str
    before_guard: bool
    detect_seconds: float | None
    exposed_share: float
    simulated_seconds: float
    reason: str

    @property
    def halted(self) -> bool:
        return self.outcome in ("rollback", "pause")


class Run:
    """The state of one simulated rollout."""

    def __init__(
        self,
        plan: WhatIfPlan,
        fleet: FleetModel,
        config: GateConfig,
        release: ReleaseKind,
        event: OutsideEvent | None,
        rng: random.Random,
    ):
        self.plan, self.fleet, self.config, self.release, self.event, self.rng = (
            plan,
            fleet,
            config,
            release,
            event,
            rng,
        )
        self.sizes = fleet.stage_sizes(plan.stages)
        self.reachable = fleet.devices - round(fleet.devices * fleet.silent_share)
        self.window = Window(config.window_minutes)
        self.baseline = Window(config.window_minutes)
        # The slice the ring and the baseline are compared on (GateConfig.baseline_window_minutes).
        self.ring_recent = Window(config.baseline_window_minutes)
        self.baseline_recent = Window(config.baseline_window_minutes)
        self.baseline_offsets = Offsets.draw(rng)
        self.installs: list[StageInstall] = []
        self.stage_index = -1
        self.streak = 0
        self.bake_started: float | None = None
        self.first_bad: float | None = None
        self.old_before = 0
        self._begin_stage(0.0)

    @property
    def stage(self) -> dict[str, Any]:
        return self.plan.stages[self.stage_index]

    def _begin_stage(self, now: float) -> None:
        self.stage_index += 1
        install = StageInstall.begin(self.fleet, self.sizes[self.stage_index], now, self.plan.waves, self.rng)
        self.installs.append(install)
        self.offsets = Offsets.draw(self.rng)
        # The ring's window holds only checks sent since its devices were targeted; the baseline is
        # judged over the same span, so an outside event weighs alike on both.
        for window in (self.window, self.baseline, self.ring_recent, self.baseline_recent):
            window.clear()
        self.bake_started = None
        if self.release.bad and self.first_bad is None:
            hurt = VARIANTS[self.release.variant] if self.release.variant else 1.0
            first = install.first_install_after(hurt)
            if math.isfinite(first):
                # The first check of the first device on the release: half a heartbeat after its install.
                self.first_bad = now + first + self.fleet.heartbeat_seconds / 2

    def play(self, index: int) -> RunResult:
        now, horizon = 0.0, self.plan.horizon_seconds()
        while now < horizon:
            step = self._step(now)
            now += step
            self._report(now, step)
            decision = evaluate(self._health(now), self.config, self._signals(now))
            bake_done = self._bake(now).done
            move = autopilot_move(
                decision.action, streak=self.streak, config=self.config, may_advance=bake_done
            )
            self.streak = move.streak
            if move.step in (Step.ROLLBACK, Step.PAUSE):
                return self._result(index, move.step.value, now, decision.reason)
            if move.step == Step.PROMOTE:
                if self.stage_index + 1 == len(self.plan.stages):
                    return self._result(index, "completed", now, decision.reason)
                self._begin_stage(now)
        return self._result(index, "unfinished", now, "No decision within the stage's time.")

    def _step(self, now: float) -> int:
        """The autopilot's period, or a minute while the stage's window is stationary; never past
        the start of an outside event or the end of the bake."""
        period = AUTOPILOT_PERIOD_SECONDS
        install = self.installs[-1]
        if not install.settled(now) or self.bake_started is None or not self._quiet(now):
            return period
        whole = self.window.seconds / STATIONARY_STEPS_PER_WINDOW
        step = max(STATIONARY_STEP_SECONDS, math.floor(whole / period) * period)
        bake_end = self.bake_started + self.stage.get("bake_minutes", 0) * 60
        for moment in (bake_end, self.event.start if self.event else math.inf):
            if now < moment < now + step:
                step = max(period, math.ceil((moment - now) / period) * period)
        return step

    def _quiet(self, now: float) -> bool:
        """No outside event under way or still in the window."""
        event = self.event
        return event is None or now < event.start or now >= event.end + self.window.seconds

    def _conditions(self, now: float, new: bool) -> list[Condition]:
        if new:
            conditions = self.release.conditions(self.installs[-1].ages(now) if self.release.bad else (0.0,))
        else:
            conditions = [Condition(weight=1.0)]
        if self.event is not None and self.event.active(now):
            conditions = self.event.apply(conditions)
        return conditions

    def _report(self, now: float, step: float) -> None:
        """A bucket of the stage's devices on the release, and one of the devices still on the old
        (whose window first forgets the devices that have installed the release since)."""
        old = self._old_devices(now)
        if self.old_before:
            for window in (self.baseline, self.baseline_recent):
                window.keep(old / self.old_before)
        self.old_before = old
        groups = (
            ((self.window, self.ring_recent), self.installs[-1].installed(now), True, self.offsets),
            ((self.baseline, self.baseline_recent), old, False, self.baseline_offsets),
        )
        for windows, devices, new, offsets in groups:
            bucket = draw_bucket(
                self.rng,
                end=now,
                seconds=step,
                heartbeat=self.fleet.heartbeat_seconds,
                devices=devices,
                conditions=self._conditions(now, new=new),
                offsets=offsets,
            )
            for window in windows:
                window.add(bucket, now)

    def _old_devices(self, now: float) -> int:
        return max(self.reachable - sum(install.installed(now) for install in self.installs), 0)

    def _health(self, now: float):
        install = self.installs[-1]
        # Devices that activated more than the grace ago are expected to have reported.
        expected = install.installed(now - self.config.reporting_grace_seconds)
        return self.window.health(self.rng, ring=self.stage["ring"], expected=expected)

    def _signals(self, now: float) -> Signals:
        install = self.installs[-1]
        released = install.released(now)
        progress = InstallProgress(
            version=VERSION,
            targeted=released,
            installed=install.installed(now),
            # Silent for good: far longer than any plan's unreachable_after_minutes.
            unreachable=round(install.silent * released / install.devices) if install.devices else 0,
            min_share=self.stage.get("min_installed_share", DEFAULT_MIN_INSTALLED_SHARE),
        )
        if self.bake_started is None and progress.met:
            self.bake_started = now
        return Signals(
            deployment_failure_rate=install.failure_rate(now),
            install=progress,
            bake=self._bake(now),
            baseline=self._baseline(now),
        )

    def _baseline(self, now: float) -> Baseline:
        """The old devices over the window and its last slice, and the ring over that slice."""
        old = self._old_devices(now)
        expected = self.installs[-1].installed(now - self.config.reporting_grace_seconds)
        return Baseline(
            window=self.baseline.health(self.rng, ring="baseline", expected=old),
            recent=self.baseline_recent.health(self.rng, ring="baseline", expected=old),
            ring_recent=self.ring_recent.health(self.rng, ring=self.stage["ring"], expected=expected),
        )

    def _bake(self, now: float) -> BakeClock:
        started = None if self.bake_started is None else _EPOCH + dt.timedelta(seconds=self.bake_started)
        return BakeClock(
            ring=self.stage["ring"],
            minutes=self.stage.get("bake_minutes", 0),
            started_at=started,
            now=_EPOCH + dt.timedelta(seconds=now),
        )

    def _result(self, index: int, outcome: str, now: float, reason: str) -> RunResult:
        guard = self.plan.guard_stage(self.fleet.ring_shares)
        halted = outcome in ("rollback", "pause")
        detect = None
        if halted and self.release.bad and self.first_bad is not None:
            detect = max(now - self.first_bad, 0.0)
        exposed = sum(install.installed(now) for install in self.installs)
        return RunResult(
            index=index,
            release=self.release.name,
            bad=self.release.bad,
            event=self.event.kind if self.event and self.event.start < now else None,
            outcome=outcome,
            stage_index=self.stage_index,
            stage=self.stage["ring"],
            before_guard=halted and (guard is None or self.stage_index < guard),
            detect_seconds=detect,
            exposed_share=exposed / self.fleet.devices if self.fleet.devices else 0.0,
            simulated_seconds=now,
            reason=reason,
        )
