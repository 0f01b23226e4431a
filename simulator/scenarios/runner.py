"""The three demo scenarios of 000 §11, played unattended against a running SafeRoll (SPEC §12, §15).

    happy         a healthy release, promoted ring by ring by a release manager whenever the gates
                  say PROMOTE (and the ring has baked), until SafeRoll completes it after the last ring.
    disaster      pilot passes and is promoted to ring_5; ring_5 then crashes (`inject ring_5 0.03`)
                  and SafeRoll — not the script — rolls back; nobody outside pilot and ring_5 ever
                  received the bad release.
    manual-pause  in ring_5 a minor failure (`inject ring_5 0.01`) makes the gates say PAUSE; the
                  release manager pauses ("Investigating network latency") unless SafeRoll already
                  has, clears the failure, resumes once the gates pass again and finishes the rollout.

The runner drives an in-process simulated fleet (simulator.fleet.Fleet) against the server and acts
through the REST API as a release manager, exactly as a person with a token would. It prints a
timeline as things happen (simulator.timeline), then the blast radius and whether the scenario
ended as it should (`judge`). Every wait has a deadline; a run that cannot finish rolls its own
rollout back so that its devices are free for the next run.

Timings. `DEMO` plays the scenarios as 000 §11 tells them, on the demo fleet of seed_demo (1,000
devices, a check every 5 s, one-minute bakes, 000 §6.2's gates): a few minutes each. `FAST` is the
same logic with smaller numbers for tests and quick rehearsals: 60 devices, a check every 3 s, a
plan with no bake and a one-minute window, on a server whose autopilot runs every second or two.

The logic is plain classes over an API client and a fleet, so tests can drive it directly; the
management command (`manage.py scenario`) only parses options and prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from simulator.api import ApiFailure, Conflict, ReleaseManagerApi
from simulator.fleet import Fleet, FleetConfig
from simulator.timeline import Timeline, format_blast_radius, percent

HAPPY = "happy"
DISASTER = "disaster"
MANUAL_PAUSE = "manual-pause"
SCENARIOS = (HAPPY, DISASTER, MANUAL_PAUSE)

STABLE_VERSION = "v2.0"
VERSIONS = {HAPPY: "v2.1", DISASTER: "v2.1_buggy", MANUAL_PAUSE: "v2.2"}
RELEASE_NOTES = {
    HAPPY: "A healthy release (scenario: happy path).",
    DISASTER: "A release with a crash bug (scenario: disaster averted by auto-rollback).",
    MANUAL_PAUSE: "A release rehearsed with a manual pause and resume (scenario: manual pause).",
}
# The demo fleet's rings (000 §8.2); the failures of 000 §11 are injected in the second one.
RINGS = ("pilot", "ring_5", "ring_25", "ring_100")
FAILURE_RING = "ring_5"
# Crash rates of 000 §11.2 and §11.3. simulator/health.py explains why 0.03 rolls back (boot
# success critical) and 0.01 only pauses (both gates fail, neither critical).
DISASTER_RATE = 0.03
MINOR_RATE = 0.01
PAUSE_REASON = "Investigating network latency"
RESUME_REASON = "Issue resolved: the failure is cleared and the gates pass again."

ACTIVE, PAUSED, COMPLETED, ROLLED_BACK = "active", "paused", "completed", "rolled_back"
UNFINISHED = ("created", ACTIVE, PAUSED)
PROMOTE, PAUSE, ROLLBACK, WAIT = "PROMOTE", "PAUSE", "ROLLBACK", "WAIT"
ROLLBACK_ACTIONS = ("ROLLBACK", "AUTO_ROLLBACK")
PAUSE_ACTIONS = ("PAUSE", "AUTO_PAUSE")

T = TypeVar("T")

# How long a server that has just started gets to show its autopilot's first round.
AUTOPILOT_GRACE_SECONDS = 15.0


# --- Timings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timings:
    """How big and how fast a run is. Everything a scenario waits for has its deadline here."""

    label: str
    devices: int
    # Seconds between a device's health checks, and between its desired-state reads.
    interval: float
    checkin_interval: float
    # Device ids are PREFIX-0001…; "tv" are seed_demo's devices, which the demo fleet plays.
    prefix: str
    plan: str
    bake_minutes: int
    # The plan's gate settings over 000 §6.2's defaults.
    gate_config: Mapping[str, Any]
    poll_seconds: float
    # manual-pause: how long ring_5 runs healthy before the minor failure, so that the window
    # holds a healthy history and one unlucky check cannot read as critical; and how long the
    # engineer "looks at the logs" before clearing the failure.
    settle_seconds: float
    investigate_seconds: float
    enroll_timeout: float
    # A ring's devices to deploy, report and pass the gates, bake included.
    ring_timeout: float
    # SafeRoll to react to an injected failure.
    reaction_timeout: float
    # The gates to pass again once a failure is cleared: its checks have to leave the window.
    recovery_timeout: float

    def plan_definition(self) -> dict[str, Any]:
        """The plan the scenarios run under: the demo rings, promoted by the release manager (no
        auto-advance: the scenarios are about what a person does), completed by SafeRoll after
        the last ring's bake."""
        return {
            "name": self.plan,
            "description": (
                f"Rehearsals of the demo scenarios (manage.py scenario, {self.label} timings): the "
                f"demo rings with a {self.bake_minutes}-minute bake, promoted by a release manager."
            ),
            "stages": [
                {"ring": ring, "bake_minutes": self.bake_minutes, "auto_advance": False} for ring in RINGS
            ],
            "gate_config": dict(self.gate_config),
        }

    @property
    def min_sample(self) -> int:
        return int(self.gate_config.get("min_sample", 10))


DEMO = Timings(
    label="demo",
    devices=1000,
    interval=5.0,
    checkin_interval=15.0,
    prefix="tv",
    plan="scenario",
    bake_minutes=1,
    # 000 §6.2 as they are: a five-minute window, ten devices before any judgement.
    gate_config={},
    poll_seconds=2.0,
    settle_seconds=30.0,
    investigate_seconds=15.0,
    enroll_timeout=180.0,
    ring_timeout=300.0,
    reaction_timeout=300.0,
    recovery_timeout=480.0,
)

FAST = Timings(
    label="fast",
    devices=60,
    interval=3.0,
    checkin_interval=5.0,
    # Not seed_demo's "tv": its first 100 devices are all pilot devices. Small on purpose: a server
    # in one process (the test suite's) answers a 100-device fleet at a 2 s interval in seconds,
    # not milliseconds, and a slow answer delays every deployment step.
    prefix="scn",
    plan="scenario-fast",
    bake_minutes=0,
    gate_config={
        # A one-minute window so that a cleared failure leaves it in a minute, not five.
        "window_minutes": 1,
        # ring_5 of a 60-device fleet has 3 devices.
        "min_sample": 3,
        # Checks come every 3 s instead of 5–30 s: a device that activated 10 s ago has reported.
        "reporting_grace_seconds": 10,
        # The autopilot judges every 1–2 s instead of every 10 s: sixty failing evaluations in a
        # row are one to two minutes of sustained failure. Fewer would pause the disaster's ring_5
        # (crash-free fails at once) before its failed boots read as critical: ring_5 has only 3
        # devices here, a check each every 3 s, and at the injected rate a boot fails in about one
        # check of seven, so ten seconds can pass (one run in four) without a single failed boot.
        "consecutive_failures_to_pause": 60,
    },
    poll_seconds=1.0,
    settle_seconds=20.0,
    investigate_seconds=2.0,
    enroll_timeout=60.0,
    ring_timeout=90.0,
    reaction_timeout=90.0,
    recovery_timeout=150.0,
)


def timings_for(*, fast: bool, devices: int | None = None, interval: float | None = None) -> Timings:
    """DEMO or FAST, with the fleet size and check interval overridden when given."""
    timings = FAST if fast else DEMO
    changes: dict[str, Any] = {}
    if devices is not None:
        changes["devices"] = devices
    if interval is not None:
        changes["interval"] = interval
    return replace(timings, **changes) if changes else timings


def simulated_fleet(api_url: str, timings: Timings, *, enrollment_key: str, seed: int | None = None) -> Fleet:
    """The fleet a scenario plays with: every device on the stable release, rings left to the
    server (the demo fleet's devices keep theirs; new ones are spread by the fleet's shares)."""
    return Fleet(
        FleetConfig(
            api_url=api_url,
            devices=timings.devices,
            interval=timings.interval,
            checkin_interval=timings.checkin_interval,
            enrollment_key=enrollment_key,
            prefix=timings.prefix,
            seed=seed,
            version=STABLE_VERSION,
        )
    )


# --- Outcomes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One thing a scenario must end with, and whether it did."""

    label: str
    passed: bool


@dataclass(frozen=True)
class Outcome:
    scenario: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)


def _actions(detail: Mapping[str, Any]) -> list[str]:
    return [str(event.get("action")) for event in detail.get("events", [])]


def _first_index(actions: list[str], wanted: tuple[str, ...]) -> int | None:
    return next((index for index, action in enumerate(actions) if action in wanted), None)


def judge(
    scenario: str, detail: Mapping[str, Any] | None, *, seen_rings: frozenset[str] = frozenset()
) -> Outcome:
    """Whether a rollout (its GET /api/rollouts/{id} answer) ended as the scenario expects.

    `seen_rings` are the rings of the devices the runner saw running the release while it waited
    (GET /api/devices?version=…): a second witness, besides the rollout's deployments, that the
    bad release of the disaster stayed inside pilot and ring_5."""
    if detail is None:
        return Outcome(scenario, (Check("a rollout was created and started", False),))
    status = detail.get("status")
    actions = _actions(detail)
    no_rollback = Check("no rollback", not any(action in ROLLBACK_ACTIONS for action in actions))
    if scenario == HAPPY:
        return Outcome(
            scenario,
            (
                Check(f"completed (ended {status})", status == COMPLETED),
                no_rollback,
            ),
        )
    if scenario == MANUAL_PAUSE:
        paused_at = _first_index(actions, PAUSE_ACTIONS)
        resumed_after = paused_at is not None and "RESUME" in actions[paused_at + 1 :]
        return Outcome(
            scenario,
            (
                Check(f"completed (ended {status})", status == COMPLETED),
                Check("paused (PAUSE or AUTO_PAUSE) in the timeline", paused_at is not None),
                Check("resumed (RESUME) after the pause", resumed_after),
                no_rollback,
            ),
        )
    if scenario == DISASTER:
        return Outcome(scenario, _disaster_checks(detail, status, actions, seen_rings))
    raise ValueError(f"Unknown scenario {scenario!r}; the scenarios are {', '.join(SCENARIOS)}.")


def _disaster_checks(
    detail: Mapping[str, Any], status: Any, actions: list[str], seen_rings: frozenset[str]
) -> tuple[Check, ...]:
    allowed = set(RINGS[: RINGS.index(FAILURE_RING) + 1])
    by_ring = (detail.get("deployments") or {}).get("by_ring") or {}
    outside = {
        ring: counts
        for ring, counts in by_ring.items()
        if ring not in allowed and (counts.get("exposed") or counts.get("targeted"))
    }
    auto = [event for event in detail.get("events", []) if event.get("action") == "AUTO_ROLLBACK"]
    blast = detail.get("blast_radius") or {}
    inside = sum(int(by_ring.get(ring, {}).get("exposed", 0)) for ring in allowed)
    allowed_text = " and ".join(sorted(allowed, key=RINGS.index))
    return (
        Check(f"rolled back (ended {status})", status == ROLLED_BACK),
        Check(
            f"rolled back by SafeRoll (AUTO_ROLLBACK in {FAILURE_RING}), not by a person",
            bool(auto) and auto[0].get("from_ring") == FAILURE_RING and "ROLLBACK" not in actions,
        ),
        Check(
            f"the failure reached {FAILURE_RING} (devices exposed there)",
            bool(by_ring.get(FAILURE_RING, {}).get("exposed")),
        ),
        Check(
            f"no deployment outside {allowed_text}"
            + (f" (found: {', '.join(sorted(outside))})" if outside else ""),
            not outside and int(blast.get("exposed", 0)) == inside,
        ),
        Check(
            f"no device outside {allowed_text} seen running the release"
            + (f" (seen in: {', '.join(sorted(seen_rings - allowed))})" if seen_rings - allowed else ""),
            seen_rings <= allowed,
        ),
    )


# --- The runner ------------------------------------------------------------------------------------


class ScenarioFailed(Exception):
    """The scenario cannot reach its end: a deadline passed, SafeRoll refused, or it was stopped."""


class SimulatedFleet(Protocol):
    """What the runner needs of simulator.fleet.Fleet."""

    seed: int

    async def start(self) -> None: ...

    async def stop(self) -> dict: ...

    def inject(
        self, rate: float, *, ring: str | None = None, version: str | None = None, pattern: Any = ...
    ) -> Any: ...

    def clear(self, *, ring: str | None = None, version: str | None = None) -> dict: ...

    def status(self) -> dict: ...


@dataclass
class ScenarioResult:
    scenario: str
    outcome: Outcome
    rollout: dict[str, Any] | None
    lines: list[str]
    error: str | None = None
    fleet_summary: dict[str, Any] = field(default_factory=dict)
    simulated_devices: int = 0
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and self.outcome.passed


class ScenarioRunner:
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
        self.scenario = scenario
        self.version = VERSIONS[scenario]
        self.api = api
        self.fleet = fleet
        self.timings = timings
        self.emit = emit
        self.stop = stop or asyncio.Event()
        self.clock = clock
        self.timeline = Timeline(clock())
        self.rollout_id: str | None = None
        self.detail: dict[str, Any] | None = None
        self.decision: dict[str, Any] | None = None
        self.seen_rings: set[str] = set()
        self._shown_decision: tuple[str, str | None] | None = None
        self._fleet_started = False

    # ---- the run -----------------------------------------------------------------------------

    async def run(self) -> ScenarioResult:
        started = self.clock()
        error = None
        summary: dict[str, Any] = {}
        try:
            await self._prepare()
            await self._start_fleet()
            await self._create_and_start()
            await {HAPPY: self._happy, DISASTER: self._disaster, MANUAL_PAUSE: self._manual_pause}[
                self.scenario
            ]()
            await self._look()
        except (ScenarioFailed, ApiFailure) as exc:
            error = str(exc)
            self._note("FAILED", None, error)
            await self._abandon(error)
        finally:
            if self._fleet_started:
                self._fleet_notices()
                summary = await self.fleet.stop()
                self._note("fleet", None, _fleet_summary_text(summary))
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
        autopilot = await self._autopilot_pulse()
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
        busy = await self.api.unfinished_rollouts()
        if busy:
            names = ", ".join(f"{item['rollout_id']} ({item['version']}, {item['state']})" for item in busy)
            raise ScenarioFailed(
                f"Other rollouts hold devices: {names}. Finish or roll them back first: their devices "
                "would be skipped by this scenario's rollout."
            )
        await self._ensure_release(STABLE_VERSION, previous=None)
        await self._ensure_release(self.version, previous=STABLE_VERSION)
        await self._ensure_plan()

    async def _autopilot_pulse(self) -> dict[str, Any]:
        """The autopilot's status from GET /health. A server that has just started has not run a
        round yet: give it a few periods before calling it stale."""
        autopilot: dict[str, Any] = {}
        deadline = time.monotonic() + AUTOPILOT_GRACE_SECONDS
        while True:
            autopilot = (await self.api.server_health()).get("autopilot") or {}
            if not autopilot.get("stale") or time.monotonic() >= deadline:
                return autopilot
            await self._sleep(min(1.0, float(autopilot.get("period_seconds") or 1.0)))

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
            self._note("scenario", None, f"Plan {wanted['name']} created: {_plan_text(wanted)}.")
        elif not _plan_matches(stored, wanted):
            await self.api.update_plan(
                wanted["name"], {"stages": wanted["stages"], "gate_config": wanted["gate_config"]}
            )
            self._note(
                "scenario", None, f"Plan {wanted['name']} set back to the scenario's: {_plan_text(wanted)}."
            )

    async def _start_fleet(self) -> None:
        self._fleet_started = True
        await self.fleet.start()
        expected = self.timings.devices

        async def enrolled() -> dict | None:
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
        short = [ring for ring in RINGS if rings.get(ring, 0) < self.timings.min_sample]
        if short:
            raise ScenarioFailed(
                f"Too few simulated devices in {', '.join(short)} to judge (the plan needs "
                f"{self.timings.min_sample} per ring). The server may already know these device ids in "
                "other rings: try another --prefix, or more --devices."
            )

    async def _create_and_start(self) -> None:
        detail = await self.api.create_rollout(self.version, self.timings.plan)
        self.rollout_id = detail["rollout_id"]
        self.timeline.anchor(detail["created_at"], self.clock())
        self._show(detail)
        self._show(await self.api.command(self.rollout_id, "start"))

    # ---- the scenarios -----------------------------------------------------------------------

    async def _happy(self) -> None:
        await self._drive_to_completion()

    async def _disaster(self) -> None:
        await self._promote_when_ready("pilot")
        self._inject(DISASTER_RATE)

        async def rolled_back() -> dict | None:
            detail = await self._look(watch_exposure=True)
            if detail["status"] == PAUSED:
                raise ScenarioFailed("SafeRoll paused the rollout instead of rolling it back.")
            if detail["status"] == ROLLED_BACK:
                return detail
            await self._gates(detail)
            return None

        await self._until("SafeRoll to roll the rollout back", self.timings.reaction_timeout, rolled_back)
        await self._await_devices_back()
        self._clear()

    async def _manual_pause(self) -> None:
        await self._promote_when_ready("pilot")
        await self._ready(FAILURE_RING)
        # Watch ring_5 run healthy for a while ("still green"), then the minor failure.
        await self._hold(self.timings.settle_seconds, expect_ring=FAILURE_RING)
        self._inject(MINOR_RATE)

        async def gates_say_pause() -> dict | None:
            detail = await self._look()
            self._expect_not_rolled_back(detail)
            if detail["status"] == PAUSED:
                return detail
            decision = await self._gates(detail)
            return detail if decision and decision["action"] == PAUSE else None

        detail = await self._until("the gates to say PAUSE", self.timings.reaction_timeout, gates_say_pause)
        if detail["status"] == ACTIVE:
            await self._command("pause", PAUSE_REASON)
        await self._hold(self.timings.investigate_seconds, expect_status=PAUSED)
        self._clear()

        async def gates_pass_again() -> dict | None:
            detail = await self._look()
            self._expect_not_rolled_back(detail)
            if detail["status"] == ACTIVE:
                return detail
            decision = await self._gates(detail)
            if decision and decision["action"] == PROMOTE:
                return await self._command("resume", RESUME_REASON)
            return None

        await self._until(
            "the gates to pass again after clearing", self.timings.recovery_timeout, gates_pass_again
        )
        await self._drive_to_completion()

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

            async def moved_on(status: str = status, ring: str | None = ring) -> bool:
                current = await self._look()
                if (current["status"], current["current_ring"]) != (status, ring):
                    return True
                decision = await self._gates(current)
                if decision is None or decision["action"] != PROMOTE:
                    return False
                if status == PAUSED:
                    await self._command("resume", RESUME_REASON)
                elif current.get("next_ring") and self._baked(current):
                    await self._command("promote")
                # At the last ring SafeRoll completes the rollout itself once the ring has baked.
                return False

            where = f"{ring} ({status})" if status == PAUSED else ring
            await self._until(f"{where} to pass its gates and move on", self._ring_deadline(detail), moved_on)

    async def _ready(self, ring: str) -> dict[str, Any]:
        """Wait until the rollout is active in `ring`, its gates say PROMOTE and it has baked."""

        async def ready() -> dict | None:
            detail = await self._look()
            self._expect_not_rolled_back(detail)
            if detail["status"] != ACTIVE or detail["current_ring"] != ring:
                raise ScenarioFailed(f"The rollout left {ring} unexpectedly: it is {detail['state']}.")
            decision = await self._gates(detail)
            return detail if decision and decision["action"] == PROMOTE and self._baked(detail) else None

        detail = self.detail or await self._look()
        return await self._until(f"{ring} to pass its gates", self._ring_deadline(detail), ready)

    async def _promote_when_ready(self, ring: str) -> None:
        """Promote out of `ring` as the release manager once it is ready. The gates may change
        their mind between our look and the promote (a refused promote is audited and shown):
        then wait again."""
        while True:
            await self._ready(ring)
            if await self._command("promote") is not None:
                return

    async def _command(self, command: str, reason: str = "") -> dict[str, Any] | None:
        """A lifecycle command as the release manager; None when SafeRoll refused it (409)."""
        assert self.rollout_id is not None
        try:
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

        async def back() -> dict | None:
            detail = await self._look(watch_exposure=True)
            states = (detail.get("deployments") or {}).get("by_state") or {}
            return detail if not states.get("rolling_back") else None

        # Devices learn of the rollback at their next check-in and need a few seconds to switch back.
        timeout = 2 * self.timings.checkin_interval + 10
        with contextlib.suppress(ScenarioFailed):
            await self._until("the exposed devices to roll back", timeout, back)
        states = ((self.detail or {}).get("deployments") or {}).get("by_state") or {}
        text = f"{states.get('rolled_back', 0)} exposed devices are back on {STABLE_VERSION}"
        if states.get("rolling_back"):
            text += f", {states['rolling_back']} still rolling back after {timeout:.0f} s"
        self._note("fleet", None, f"{text}; {states.get('cancelled', 0)} pending deployments were cancelled.")

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
            key = (decision["action"], detail["current_ring"])
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
            last = next(
                (e for e in reversed(detail.get("events", [])) if e.get("action") in ROLLBACK_ACTIONS), {}
            )
            raise ScenarioFailed(f"The rollout was rolled back: {last.get('reason', 'no reason given')}")

    def _baked(self, detail: Mapping[str, Any]) -> bool:
        """Whether the current ring has run for its stage's bake time (server clock)."""
        started = detail.get("stage_started_at")
        if not started:
            return False
        stage = next((s for s in detail.get("stages", []) if s.get("ring") == detail.get("current_ring")), {})
        return self.clock() >= self.timeline.to_local(started) + 60 * float(stage.get("bake_minutes", 0))

    def _ring_deadline(self, detail: Mapping[str, Any]) -> float:
        stage = next((s for s in detail.get("stages", []) if s.get("ring") == detail.get("current_ring")), {})
        return self.timings.ring_timeout + 60 * float(stage.get("bake_minutes", 0))

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


def _fleet_summary_text(summary: Mapping[str, Any]) -> str:
    """What the simulated fleet did, and how quickly SafeRoll answered it."""
    answers = summary.get("answer_ms") or {}
    failures = summary.get("failures") or {}
    text = (
        f"Fleet up {summary.get('uptime_s', 0):.0f} s: {summary.get('checks_delivered', 0)} health "
        f"checks stored, {summary.get('checks_rejected', 0)} rejected, {summary.get('checks_dropped', 0)} "
        f"dropped; SafeRoll answered in {answers.get('p50', 0)} ms (p50), {answers.get('p95', 0)} ms (p95)."
    )
    if failures:
        text += " Failed requests: " + ", ".join(f"{kind} ×{count}" for kind, count in failures.items()) + "."
    return text


def _plan_matches(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a stored plan has the scenario's stages and gate settings (extra stored keys, such
    as defaults filled in, do not count as a difference)."""
    stages = stored.get("stages") or []
    if len(stages) != len(wanted["stages"]):
        return False
    for have, want in zip(stages, wanted["stages"], strict=True):
        if any(have.get(key) != value for key, value in want.items()):
            return False
    gates = stored.get("gate_config") or {}
    return all(gates.get(key) == value for key, value in wanted["gate_config"].items()) and not (
        set(gates) - set(wanted["gate_config"])
    )


def _plan_text(plan: Mapping[str, Any]) -> str:
    stages = plan["stages"]
    gates = ", ".join(f"{key} {value}" for key, value in plan["gate_config"].items()) or "000 §6.2's gates"
    return (
        f"{' → '.join(stage['ring'] for stage in stages)}, {stages[0]['bake_minutes']}-minute bakes, "
        f"promoted by hand; {gates}"
    )


# --- The report ------------------------------------------------------------------------------------


def format_result(result: ScenarioResult) -> list[str]:
    """The summary after the timeline: blast radius, the expected outcome check by check, verdict."""
    lines = [""]
    rollout = result.rollout
    minutes, seconds = divmod(int(result.duration), 60)
    if rollout is None:
        lines.append(f"Scenario {result.scenario}: no rollout was created ({minutes}:{seconds:02d}).")
    else:
        lines.append(
            f"Scenario {result.scenario}: rollout {rollout['rollout_id']} of {rollout['version']} "
            f"ended {rollout['state']} after {minutes}:{seconds:02d}."
        )
        by_ring = (rollout.get("deployments") or {}).get("by_ring") or {}
        blast = rollout.get("blast_radius") or {}
        lines.extend("  " + line for line in format_blast_radius(rollout["version"], blast, by_ring))
        fleet = int(blast.get("fleet", 0))
        others = fleet - result.simulated_devices
        if others > 0:
            lines.append(
                f"  ({others} of the server's {fleet} devices ({percent(others, fleet)}) are not simulated "
                "by this run: they never check in, so they never receive anything.)"
            )
    for check in result.outcome.checks:
        lines.append(f"  {'PASS' if check.passed else 'FAIL'}  {check.label}")
    if result.error:
        lines.append(f"  FAIL  {result.error}")
    lines.append(f"Result: {'PASS' if result.passed else 'FAIL'} ({result.scenario})")
    return lines
