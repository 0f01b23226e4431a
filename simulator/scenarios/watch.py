"""How a scenario follows its rollout: it looks (the rollout's new events, the gates' decision, the
fleet's notices, each printed as a timeline line when it happens) and it waits (every wait with a
deadline, every wait cut short by a stop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from simulator.api import ReleaseManagerApi
from simulator.scenarios.presets import ACTIVE, PAUSED, ROLLBACK_ACTIONS, ROLLED_BACK, WAIT, Timings
from simulator.timeline import Timeline

T = TypeVar("T")


class ScenarioFailed(Exception):
    """The scenario cannot reach its end: a deadline passed, SafeRoll refused, or it was stopped."""


class SimulatedFleet(Protocol):
    """What the runner needs of simulator.fleet.Fleet."""

    seed: int

    async def start(self) -> None: ...

    async def stop(self) -> dict[str, Any]: ...

    def inject(
        self, rate: float, *, ring: str | None = None, version: str | None = None, pattern: Any = ...
    ) -> Any: ...

    def clear(self, *, ring: str | None = None, version: str | None = None) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...


class RolloutWatch:
    """One rollout of `version` as a release manager follows it. `emit` receives each timeline
    line as it happens; `stop`, once set (Ctrl-C), ends the next wait with ScenarioFailed."""

    def __init__(
        self,
        version: str,
        *,
        api: ReleaseManagerApi,
        fleet: SimulatedFleet,
        timings: Timings,
        emit: Callable[[str], None],
        stop: asyncio.Event,
        clock: Callable[[], float],
    ):
        self.version = version
        self.api = api
        self.fleet = fleet
        self.timings = timings
        self.emit = emit
        self.stop = stop
        self.clock = clock
        self.timeline = Timeline(clock())
        self.rollout_id: str | None = None
        self.detail: dict[str, Any] | None = None
        self.decision: dict[str, Any] | None = None
        self.seen_rings: set[str] = set()
        self._shown_decision: tuple[str, str | None, str] | None = None

    # ---- looking ---------------------------------------------------------------------------------

    async def _look(self, *, watch_exposure: bool = False) -> dict[str, Any]:
        """The rollout now; prints its new events (and the fleet's first failures of each kind)."""
        assert self.rollout_id is not None
        detail = await self.api.rollout(self.rollout_id)
        self._show(detail)
        self._fleet_notices()
        if watch_exposure:
            devices = await self.api.devices_on(self.version)
            self.seen_rings.update(device["ring"] for device in devices if device.get("ring"))
        return detail

    async def _gates(self, detail: Mapping[str, Any]) -> dict[str, Any] | None:
        """The gates' decision on the current ring; a line when it differs from the last one shown."""
        if detail["status"] not in (ACTIVE, PAUSED) or self.rollout_id is None:
            return None
        decision = await self.api.decision(self.rollout_id)
        self.decision = decision
        if decision is not None:
            # A WAIT for the install, for data and for the bake are three moments worth a line each.
            cause = str(decision.get("reason", "")).split(":")[0]
            key = (decision["action"], detail["current_ring"], cause)
            if key != self._shown_decision:
                self._shown_decision = key
                self._note(f"gates: {decision['action']}", detail["current_ring"], decision.get("reason", ""))
        return decision

    def _show(self, detail: dict[str, Any]) -> None:
        self.detail = detail
        if not self.timeline.anchored:
            self.timeline.anchor(detail["created_at"], self.clock())
        for line in self.timeline.new_events(detail.get("events", [])):
            self.emit(line)

    def _note(self, what: str, ring: str | None, text: str) -> None:
        self.emit(self.timeline.note(self.clock(), what, ring, text))

    def _fleet_notices(self) -> None:
        metrics = getattr(self.fleet, "metrics", None)
        take = getattr(metrics, "take_notices", None)
        for notice in take() if take else []:
            self._note("sim: notice", None, notice)

    def _expect_not_rolled_back(self, detail: Mapping[str, Any]) -> None:
        if detail["status"] == ROLLED_BACK:
            last: Mapping[str, Any] = next(
                (e for e in reversed(detail.get("events", [])) if e.get("action") in ROLLBACK_ACTIONS), {}
            )
            raise ScenarioFailed(f"The rollout was rolled back: {last.get('reason', 'no reason given')}")

    def _only_baking(self, decision: Mapping[str, Any] | None) -> bool:
        """Whether the gates wait for nothing but the bake: the release is installed, every gate
        passes on enough devices, and the stage's bake still runs. Then a release manager who must
        go faster may promote anyway, with a reason (an override)."""
        if not decision or decision.get("action") != WAIT:
            return False
        evaluation = decision.get("evaluation") or {}
        install = evaluation.get("install") or {}
        bake = evaluation.get("bake") or {}
        reported = (evaluation.get("health") or {}).get("total_devices", 0)
        return (
            bool(install.get("met", True))
            and all(gate.get("passed") for gate in (evaluation.get("gates") or {}).values())
            and reported >= self.timings.min_sample
            and bake.get("remaining_seconds", 0) > 0
        )

    def _ring_deadline(self, detail: Mapping[str, Any]) -> float:
        return self.timings.ring_timeout + 60 * _bake_minutes(detail)

    # ---- waiting ---------------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Sleep, unless the run is being stopped (then ScenarioFailed at once)."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise ScenarioFailed("Stopped (Ctrl-C) before the scenario's end.")

    async def _until(self, what: str, timeout: float, probe: Callable[[], Awaitable[T | None]]) -> T:
        """Poll `probe` until it returns something truthy; ScenarioFailed once `timeout` has passed."""
        deadline = time.monotonic() + timeout
        while True:
            if self.stop.is_set():
                raise ScenarioFailed("Stopped (Ctrl-C) before the scenario's end.")
            value = await probe()
            if value:
                return value
            if time.monotonic() >= deadline:
                last = (
                    f" The gates last said {self.decision['action']}: {self.decision.get('reason')}"
                    if self.decision
                    else ""
                )
                raise ScenarioFailed(f"Timed out after {timeout:.0f} s waiting for {what}.{last}")
            await self._sleep(self.timings.poll_seconds)

    async def _hold(
        self, seconds: float, *, expect_ring: str | None = None, expect_status: str | None = None
    ) -> None:
        """Watch for `seconds` (showing what happens), failing if the rollout leaves the expected state."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            detail = await self._look()
            self._expect_not_rolled_back(detail)
            if expect_ring and (detail["status"], detail["current_ring"]) != (ACTIVE, expect_ring):
                raise ScenarioFailed(f"The rollout left {expect_ring} unexpectedly: it is {detail['state']}.")
            if expect_status and detail["status"] != expect_status:
                raise ScenarioFailed(f"The rollout is {detail['state']}, not {expect_status} as expected.")
            await self._gates(detail)
            await self._sleep(min(self.timings.poll_seconds, max(0.0, deadline - time.monotonic())))


def _bake_minutes(detail: Mapping[str, Any]) -> float:
    """The bake time of the stage of the rollout's current ring."""
    stage: Mapping[str, Any] = next(
        (s for s in detail.get("stages", []) if s.get("ring") == detail.get("current_ring")), {}
    )
    return float(stage.get("bake_minutes", 0))
