"""The scenarios' names, releases and rings, SafeRoll's rollout vocabulary they read, and their timings.

`DEMO` plays the scenarios as 000 §11 tells them, on the demo fleet of seed_demo (1,000 devices, a
check every 5 s, one-minute bakes, 000 §6.2's gates): a few minutes each. `FAST` is the same logic
with smaller numbers for tests and quick rehearsals: 60 devices, a check every 3 s, a plan with no
bake and a one-minute window, on a server whose autopilot runs every second or two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from simulator.fleet import Fleet, FleetConfig

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
OVERRIDE_REASON = (
    "Rehearsal: {ring} is healthy and installed; the rest of its bake is skipped to reach the next ring."
)
RESUME_REASON = "Issue resolved: the failure is cleared and the gates pass again."

ACTIVE, PAUSED, COMPLETED, ROLLED_BACK = "active", "paused", "completed", "rolled_back"
UNFINISHED = ("created", ACTIVE, PAUSED)
PROMOTE, PAUSE, ROLLBACK, WAIT = "PROMOTE", "PAUSE", "ROLLBACK", "WAIT"
ROLLBACK_ACTIONS = ("ROLLBACK", "AUTO_ROLLBACK")
PAUSE_ACTIONS = ("PAUSE", "AUTO_PAUSE")


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
    # How many devices of a stage are told to install per minute (the plan's `waves`; empty: all at once).
    waves: Mapping[str, Any]
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
            "waves": dict(self.waves),
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
    # ring_100's 600 devices are told in waves of 100, 200, then the rest; the smaller rings at once.
    waves={"per_minute": 100, "growth": 2.0},
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
        # Which send 60 checks in the one-minute window, a check each every 3 s.
        "min_checks": 40,
        # Checks come every 3 s instead of 5–30 s: a device that activated 10 s ago has reported.
        "reporting_grace_seconds": 10,
        # The autopilot judges every 1–2 s instead of every 10 s: sixty failing evaluations in a
        # row are one to two minutes of sustained failure. Fewer would pause the disaster's ring_5
        # (crash-free fails at once) before its failed boots read as critical: ring_5 has only 3
        # devices here, a check each every 3 s, and at the injected rate a boot fails in about one
        # check of seven, so ten seconds can pass (one run in four) without a single failed boot.
        "consecutive_failures_to_pause": 60,
    },
    # A wave would hold every ring of a 60-device fleet for a minute: the tests time the gates, and
    # the waves have their own tests.
    waves={},
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


def plan_matches(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a stored plan has the scenario's stages and gate settings (extra stored keys, such
    as defaults filled in, do not count as a difference)."""
    stages = stored.get("stages") or []
    if len(stages) != len(wanted["stages"]):
        return False
    for have, want in zip(stages, wanted["stages"], strict=True):
        if any(have.get(key) != value for key, value in want.items()):
            return False
    if (stored.get("waves") or {}) != dict(wanted["waves"]):
        return False
    gates = stored.get("gate_config") or {}
    return all(gates.get(key) == value for key, value in wanted["gate_config"].items()) and not (
        set(gates) - set(wanted["gate_config"])
    )
