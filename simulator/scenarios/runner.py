"""The three demo scenarios of 000 §11, played unattended against a running SafeRoll (SPEC §12, §15).

    happy         a healthy release, promoted ring by ring by a release manager whenever the gates
                  say PROMOTE (once the ring has baked), until SafeRoll completes it after the last ring.
    disaster      pilot passes and is promoted to ring_5 before its bake is over (an override with a
                  reason); ring_5 then crashes (`inject ring_5 0.03`)
                  and SafeRoll — not the script — rolls back; nobody outside pilot and ring_5 ever
                  received the bad release.
    manual-pause  in ring_5 a minor failure (`inject ring_5 0.01`) makes the gates say PAUSE; the
                  release manager pauses ("Investigating network latency") unless SafeRoll already
                  has, clears the failure, resumes once the gates pass again and finishes the rollout.

The runner drives an in-process simulated fleet (simulator.fleet.Fleet) against the server and acts
through the REST API as a release manager, exactly as a person with a token would. It prints a
timeline as things happen (simulator.timeline), then the blast radius and whether the scenario
ended as it should (simulator.scenarios.judge). Every wait has a deadline; a run that cannot finish
rolls its own rollout back so that its devices are free for the next run.

The logic is plain classes over an API client and a fleet, so tests can drive it directly; the
management command (`manage.py scenario`) only parses options and prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

from simulator.api import ApiFailure, Conflict, ReleaseManagerApi
from simulator.scenarios.judge import ScenarioResult, judge
from simulator.scenarios.presets import (
    ACTIVE,
    COMPLETED,
    DISASTER,
    DISASTER_RATE,
    FAILURE_RING,
    HAPPY,
    MANUAL_PAUSE,
    MINOR_RATE,
    OVERRIDE_REASON,
    PAUSE,
    PAUSE_REASON,
    PAUSED,
    PROMOTE,
    RELEASE_NOTES,
    RESUME_REASON,
    RINGS,
    ROLLED_BACK,
    SCENARIOS,
    STABLE_VERSION,
    UNFINISHED,
    VERSIONS,
    Timings,
    plan_matches,
)
from simulator.scenarios.report import fleet_summary_text, plan_text
from simulator.scenarios.watch import RolloutWatch, ScenarioFailed, SimulatedFleet

# How long a server that has just started gets to show its autopilot's first round.
AUTOPILOT_GRACE_SECONDS = 15.0


class ScenarioRunner(RolloutWatch):
    """Plays one scenario. `emit` receives each timeline line as it happens; `stop`, once set
    (Ctrl-C), ends the run at the next wait: the runner then rolls its rollout back and stops the
    fleet."""

    def __init__(
        self,
        scenario: str,
        *,
        api: ReleaseManagerApi,
        fleet: SimulatedFleet,
        timings: Timings,
        emit: Callable[[str], None] = print,
        stop: asyncio.Event | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if scenario not in SCENARIOS:
            raise ValueError(f"Unknown scenario {scenario!r}; the scenarios are {', '.join(SCENARIOS)}.")
        super().__init__(
            VERSIONS[scenario],
            api=api,
            fleet=fleet,
            timings=timings,
            emit=emit,
            stop=stop or asyncio.Event(),
            clock=clock,
        )
        self.scenario = scenario
        self._fleet_started = False

    # ---- the run -----------------------------------------------------------------------------

    async def run(self) -> ScenarioResult:
        started = self.clock()
        error = None
        summary: dict[str, Any] = {}
        try:
            await self._play()
        except (ScenarioFailed, ApiFailure) as exc:
            error = str(exc)
            self._note("FAILED", None, error)
            await self._abandon(error)
        finally:
            summary = await self._stop_fleet()
        return ScenarioResult(
            scenario=self.scenario,
            outcome=judge(self.scenario, self.detail, seen_rings=frozenset(self.seen_rings)),
            rollout=self.detail,
            lines=list(self.timeline.lines),
            error=error,
            fleet_summary=summary,
            simulated_devices=self.timings.devices,
            duration=self.clock() - started,
        )

    async def _play(self) -> None:
        await self._prepare()
        await self._start_fleet()
        await self._create_and_start()
        plays = {HAPPY: self._happy, DISASTER: self._disaster, MANUAL_PAUSE: self._manual_pause}
        await plays[self.scenario]()
        await self._look()

    async def _prepare(self) -> None:
        """The autopilot's pulse, no other rollout holding devices, the releases and the plan."""
        timings = self.timings
        self._note(
            "scenario",
            None,
            f"{self.scenario} with {self.version}: {timings.devices} simulated devices against "
            f"{self.api.base_url}, a check every {timings.interval:g} s ({timings.label} timings, "
            f"seed {self.fleet.seed}).",
        )
        await self._check_autopilot()
        await self._check_no_other_rollout()
        await self._ensure_release(STABLE_VERSION, previous=None)
        await self._ensure_release(self.version, previous=STABLE_VERSION)
        await self._ensure_plan()

    async def _check_autopilot(self) -> None:
        """Say how often the autopilot judges, or warn that it does not: completion and
        auto-rollback are its work. A server that has just started has not run a round yet: give
        it a few periods before calling it stale."""
        deadline = time.monotonic() + AUTOPILOT_GRACE_SECONDS
        while True:
            autopilot = (await self.api.server_health()).get("autopilot") or {}
            if not autopilot.get("stale") or time.monotonic() >= deadline:
                break
            await self._sleep(min(1.0, float(autopilot.get("period_seconds") or 1.0)))
        if autopilot.get("stale"):
            self._note(
                "scenario",
                None,
                f"Warning: SafeRoll's autopilot has not judged anything for {autopilot.get('seconds_ago')} s "
                f"(period {autopilot.get('period_seconds')} s): completion and auto-rollback need it running.",
            )
        else:
            self._note(
                "scenario", None, f"SafeRoll's autopilot judges every {autopilot.get('period_seconds')} s."
            )

    async def _check_no_other_rollout(self) -> None:
        busy = await self.api.unfinished_rollouts()
        if busy:
            names = ", ".join(f"{item['rollout_id']} ({item['version']}, {item['state']})" for item in busy)
            raise ScenarioFailed(
                f"Other rollouts hold devices: {names}. Finish or roll them back first: their devices "
                "would be skipped by this scenario's rollout."
            )

    async def _ensure_release(self, version: str, *, previous: str | None) -> None:
        if await self.api.release(version) is not None:
            return
        payload: dict[str, Any] = {"version": version}
        if previous is None:
            payload.update(is_stable=True, notes="The fleet's stable release.")
        else:
            payload.update(previous_release=previous, notes=RELEASE_NOTES[self.scenario])
        await self.api.create_release(payload)
        self._note(
            "scenario",
            None,
            f"Release {version} created" + (f" (rolls back to {previous})." if previous else "."),
        )

    async def _ensure_plan(self) -> None:
        wanted = self.timings.plan_definition()
        stored = await self.api.plan(wanted["name"])
        if stored is None:
            await self.api.create_plan(wanted)
            self._note("scenario", None, f"Plan {wanted['name']} created: {plan_text(wanted)}.")
        elif not plan_matches(stored, wanted):
            await self.api.update_plan(
                wanted["name"],
                {"stages": wanted["stages"], "gate_config": wanted["gate_config"], "waves": wanted["waves"]},
            )
            self._note(
                "scenario", None, f"Plan {wanted['name']} set back to the scenario's: {plan_text(wanted)}."
            )

    async def _start_fleet(self) -> None:
        self._fleet_started = True
        await self.fleet.start()
        expected = self.timings.devices

        async def enrolled() -> dict[str, Any] | None:
            status = self.fleet.status()
            self._fleet_notices()
            return status if status.get("enrolled", 0) >= expected else None

        status = await self._until(
            f"the {expected} simulated devices to enroll", self.timings.enroll_timeout, enrolled
        )
        rings = {ring: info.get("devices", 0) for ring, info in status.get("rings", {}).items()}
        self._note(
            "fleet",
            None,
            f"{expected} devices enrolled: " + ", ".join(f"{r} {n}" for r, n in rings.items()) + ".",
        )
        self._check_ring_sizes(rings)

    def _check_ring_sizes(self, rings: dict[str, int]) -> None:
        short = [ring for ring in RINGS if rings.get(ring, 0) < self.timings.min_sample]
        if short:
            raise ScenarioFailed(
                f"Too few simulated devices in {', '.join(short)} to judge (the plan needs "
                f"{self.timings.min_sample} per ring). The server may already know these device ids in "
                "other rings: try another --prefix, or more --devices."
            )

    async def _create_and_start(self) -> None:
        detail = await self.api.create_rollout(self.version, self.timings.plan)
        self.rollout_id = rollout_id = detail["rollout_id"]
        self.timeline.anchor(detail["created_at"], self.clock())
        self._show(detail)
        self._show(await self.api.command(rollout_id, "start"))

    async def _stop_fleet(self) -> dict[str, Any]:
        """Stop the fleet if it was started; what it did (empty if it never ran)."""
        if not self._fleet_started:
            return {}
        self._fleet_notices()
        summary = await self.fleet.stop()
        self._note("fleet", None, fleet_summary_text(summary))
        return summary

    # ---- the scenarios -----------------------------------------------------------------------

    async def _happy(self) -> None:
        await self._drive_to_completion()

    async def _disaster(self) -> None:
        # The bad release is to meet ring_5 without waiting out the pilot's bake: promoted anyway.
        await self._promote_when_ready("pilot", override_bake=True)
        self._inject(DISASTER_RATE)
        await self._until(
            "SafeRoll to roll the rollout back", self.timings.reaction_timeout, self._rolled_back
        )
        await self._await_devices_back()
        self._clear()

    async def _manual_pause(self) -> None:
        await self._promote_when_ready("pilot")
        await self._ready(FAILURE_RING)
        # Watch ring_5 run healthy for a while ("still green"), then the minor failure.
        await self._hold(self.timings.settle_seconds, expect_ring=FAILURE_RING)
        self._inject(MINOR_RATE)
        detail = await self._until(
            "the gates to say PAUSE", self.timings.reaction_timeout, self._gates_say_pause
        )
        if detail["status"] == ACTIVE:
            await self._command("pause", PAUSE_REASON)
        await self._hold(self.timings.investigate_seconds, expect_status=PAUSED)
        self._clear()
        await self._until(
            "the gates to pass again after clearing",
            self.timings.recovery_timeout,
            self._resumed_once_passing,
        )
        await self._drive_to_completion()

    # ---- what the scenarios wait for ---------------------------------------------------------

    async def _rolled_back(self) -> dict[str, Any] | None:
        """The rollout once SafeRoll has rolled it back; ScenarioFailed if it paused instead."""
        detail = await self._look(watch_exposure=True)
        if detail["status"] == PAUSED:
            raise ScenarioFailed("SafeRoll paused the rollout instead of rolling it back.")
        if detail["status"] == ROLLED_BACK:
            return detail
        await self._gates(detail)
        return None

    async def _gates_say_pause(self) -> dict[str, Any] | None:
        """The rollout once SafeRoll has paused it or its gates say PAUSE."""
        detail = await self._look()
        self._expect_not_rolled_back(detail)
        if detail["status"] == PAUSED:
            return detail
        decision = await self._gates(detail)
        return detail if decision and decision["action"] == PAUSE else None

    async def _resumed_once_passing(self) -> dict[str, Any] | None:
        """The rollout once it is active again: resumed by the release manager when the gates pass."""
        detail = await self._look()
        self._expect_not_rolled_back(detail)
        if detail["status"] == ACTIVE:
            return detail
        decision = await self._gates(detail)
        if decision and decision["action"] == PROMOTE:
            return await self._command("resume", RESUME_REASON)
        return None

    async def _ready(self, ring: str, *, before_bake: bool = False) -> dict[str, Any]:
        """Wait until the rollout is active in `ring` and its gates say PROMOTE (which they say
        only once the ring has baked), or with `before_bake` until only the bake is left."""

        async def ready() -> dict[str, Any] | None:
            detail = await self._look()
            self._expect_not_rolled_back(detail)
            if detail["status"] != ACTIVE or detail["current_ring"] != ring:
                raise ScenarioFailed(f"The rollout left {ring} unexpectedly: it is {detail['state']}.")
            decision = await self._gates(detail)
            if decision and decision["action"] == PROMOTE:
                return detail
            return detail if before_bake and self._only_baking(decision) else None

        detail = self.detail or await self._look()
        return await self._until(f"{ring} to pass its gates", self._ring_deadline(detail), ready)

    # ---- moves ---------------------------------------------------------------------------------

    async def _drive_to_completion(self) -> None:
        """Promote each ring when its gates say PROMOTE and it has baked; after the last ring,
        SafeRoll completes the rollout by itself (SPEC §3). A rollout that SafeRoll paused is
        resumed once its gates pass, as a release manager would. Each ring has its deadline."""
        while True:
            detail = await self._look()
            status, ring = detail["status"], detail["current_ring"]
            if status == COMPLETED:
                return
            self._expect_not_rolled_back(detail)
            where = f"{ring} ({status})" if status == PAUSED else ring
            await self._until(
                f"{where} to pass its gates and move on",
                self._ring_deadline(detail),
                functools.partial(self._move_on, status, ring),
            )

    async def _move_on(self, status: str, ring: str | None) -> bool:
        """True once the rollout has left `ring` in `status`; until then, resume or promote it
        whenever its gates pass."""
        current = await self._look()
        if (current["status"], current["current_ring"]) != (status, ring):
            return True
        decision = await self._gates(current)
        if decision is None or decision["action"] != PROMOTE:
            return False
        if status == PAUSED:
            await self._command("resume", RESUME_REASON)
        elif current.get("next_ring"):
            await self._command("promote")
        # At the last ring SafeRoll completes the rollout itself once the ring has baked.
        return False

    async def _promote_when_ready(self, ring: str, *, override_bake: bool = False) -> None:
        """Promote out of `ring` as the release manager once it is ready. The gates may change
        their mind between our look and the promote (a refused promote is audited and shown):
        then wait again. With `override_bake`, promote anyway once only the bake is left."""
        while True:
            await self._ready(ring, before_bake=override_bake)
            override = self._only_baking(self.decision)
            reason = OVERRIDE_REASON.format(ring=ring) if override else ""
            if await self._command("promote", reason, override=override) is not None:
                return

    async def _command(
        self, command: str, reason: str = "", *, override: bool = False
    ) -> dict[str, Any] | None:
        """A lifecycle command as the release manager; None when SafeRoll refused it (409)."""
        assert self.rollout_id is not None
        try:
            if override:
                detail = await self.api.command(self.rollout_id, command, reason, override=True)
            else:
                detail = await self.api.command(self.rollout_id, command, reason)
        except Conflict:
            # Refused in the rollout's current state: SafeRoll got there first, or the gates
            # changed their mind since our look. The refusal is audited, so it shows in the
            # timeline; the caller carries on from whatever state the rollout is in now.
            self._show(await self.api.rollout(self.rollout_id))
            return None
        self._show(detail)
        return detail

    def _inject(self, rate: float) -> None:
        self.fleet.inject(rate, ring=FAILURE_RING)
        self._note(
            "sim: inject", FAILURE_RING, f"crash rate {rate:g} on every device of {FAILURE_RING} (immediate)"
        )

    def _clear(self) -> None:
        self.fleet.clear()
        self._note("sim: clear", FAILURE_RING, "injected failures cleared: the devices are healthy again")

    async def _abandon(self, error: str) -> None:
        """A run that cannot finish rolls its rollout back, so that its devices are not held."""
        if self.rollout_id is None:
            return
        try:
            detail = await self.api.rollout(self.rollout_id)
            if detail["status"] in UNFINISHED:
                reason = f"Scenario {self.scenario} stopped before its end: {error}"
                self._show(await self.api.command(self.rollout_id, "rollback", reason[:1900]))
            else:
                self._show(detail)
        except ApiFailure as exc:
            self._note("scenario", None, f"Could not roll the rollout back: {exc}")

    async def _await_devices_back(self) -> None:
        """After a rollback, the exposed devices return to the stable release: show it, without
        making it part of the verdict (a device that is slow to come back is SafeRoll's to flag)."""

        async def back() -> dict[str, Any] | None:
            detail = await self._look(watch_exposure=True)
            states = (detail.get("deployments") or {}).get("by_state") or {}
            return detail if not states.get("rolling_back") else None

        # Devices learn of the rollback at their next check-in and need a few seconds to switch back.
        timeout = 2 * self.timings.checkin_interval + 10
        with contextlib.suppress(ScenarioFailed):
            await self._until("the exposed devices to roll back", timeout, back)
        states = ((self.detail or {}).get("deployments") or {}).get("by_state") or {}
        text = f"{states.get('rolled_back', 0)} exposed devices are back on their stable release"
        if states.get("rolling_back"):
            text += f", {states['rolling_back']} still rolling back after {timeout:.0f} s"
        self._note("fleet", None, f"{text}; {states.get('cancelled', 0)} pending deployments were cancelled.")
