"""The runner's own duties, against a fake SafeRoll and a fake fleet: what it prepares, how it
promotes, and how it ends a run that cannot finish (deadline, refusal, Ctrl-C) without leaving its
rollout holding devices or its fleet running."""

import asyncio
import dataclasses
import datetime as dt

import pytest

from simulator.api import Conflict
from simulator.scenarios.judge import ScenarioResult
from simulator.scenarios.presets import DISASTER, FAST, HAPPY, MANUAL_PAUSE, PAUSE_REASON
from simulator.scenarios.runner import ScenarioRunner

RINGS = ["pilot", "ring_5", "ring_25", "ring_100"]
# Small numbers: the fake answers at once.
QUICK = dataclasses.replace(
    FAST,
    devices=20,
    poll_seconds=0.001,
    settle_seconds=0.0,
    investigate_seconds=0.0,
    enroll_timeout=1.0,
    ring_timeout=0.2,
    reaction_timeout=0.5,
    recovery_timeout=0.5,
)


class FakeFleet:
    seed = 7

    def __init__(self, devices: int = QUICK.devices):
        self.devices = devices
        self.running = False
        self.stopped = False
        self.injected: list[tuple[float, str]] = []
        self.cleared = 0

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> dict:
        self.running, self.stopped = False, True
        return {"uptime_s": 1.0, "checks_delivered": 10, "answer_ms": {"p50": 5, "p95": 9}}

    def inject(self, rate, *, ring=None, version=None, pattern="immediate"):
        self.injected.append((rate, ring))

    def clear(self, *, ring=None, version=None) -> dict:
        self.cleared += 1
        return {"faults": 1, "chaos_devices": 0}

    def status(self) -> dict:
        per_ring = {"pilot": 4, "ring_5": 3, "ring_25": 5, "ring_100": 8}
        return {"enrolled": self.devices, "rings": {ring: {"devices": n} for ring, n in per_ring.items()}}


class FakeSafeRoll:
    """Just enough of SafeRoll's API: one rollout going through the lifecycle, gates that answer
    what `gates(fake)` says, and an autopilot that completes the last ring when the gates pass."""

    base_url = "http://saferoll.test"

    def __init__(
        self,
        *,
        gates=lambda fake: "PROMOTE",
        busy=(),
        plans=None,
        autopilot=None,
        evaluation=None,
        reason=None,
    ):
        self.gates = gates
        # The decision's reason; "gates say ACTION" unless a test gives its own.
        self.reason = reason or (lambda fake, action: f"gates say {action}")
        # The evaluation detail the gates' decision carries (install share, bake, gates, health).
        self.evaluation = evaluation or (lambda fake: {})
        self.busy = list(busy)
        self.releases = {"v2.0": {"version": "v2.0"}}
        self.plans = dict(plans or {})
        self.autopilot = autopilot or (lambda fake: None)
        self.calls: list[tuple] = []
        self.rollout_data: dict | None = None

    # ---- what the runner calls ----

    async def server_health(self):
        return {"status": "healthy", "autopilot": {"stale": False, "period_seconds": 1.0}}

    async def unfinished_rollouts(self):
        return self.busy

    async def release(self, version):
        return self.releases.get(version)

    async def create_release(self, payload):
        self.calls.append(("create_release", payload))
        self.releases[payload["version"]] = payload
        return payload

    async def plan(self, name):
        return self.plans.get(name)

    async def create_plan(self, payload):
        self.calls.append(("create_plan", payload["name"]))
        self.plans[payload["name"]] = payload
        return payload

    async def update_plan(self, name, changes):
        self.calls.append(("update_plan", name))
        self.plans[name] = {**self.plans[name], **changes}
        return self.plans[name]

    async def create_rollout(self, version, plan):
        self.rollout_data = {"version": version, "status": "created", "ring": None, "events": []}
        self._event("CREATED", None, None, "Created.", "scenario")
        return self.detail()

    async def command(self, rollout_id, command, reason="", *, override=False):
        self.calls.append(("command", command, reason) + (("override",) if override else ()))
        data = self.rollout_data
        status, ring = data["status"], data["ring"]
        allowed = ("PROMOTE", "WAIT") if override else ("PROMOTE",)
        if command == "start" and status == "created":
            data.update(status="active", ring="pilot")
            self._event("START", None, "pilot", "Deploying.", "scenario")
        elif command == "promote" and status == "active" and self.gates(self) in allowed:
            following = RINGS[RINGS.index(ring) + 1]
            data["ring"] = following
            self._event("PROMOTE", ring, following, "All gates passed.", "scenario")
        elif command == "pause" and status == "active":
            data["status"] = "paused"
            self._event("PAUSE", ring, None, reason, "scenario")
        elif command == "resume" and status == "paused" and self.gates(self) == "PROMOTE":
            data["status"] = "active"
            self._event("RESUME", None, ring, reason, "scenario")
        elif command == "rollback" and status in ("created", "active", "paused"):
            data["status"] = "rolled_back"
            self._event("ROLLBACK", ring, None, reason, "scenario")
        else:
            raise Conflict(f"HTTP 409: refused {command}", status=409)
        return self.detail()

    async def rollout(self, rollout_id):
        self.autopilot(self)
        data = self.rollout_data
        if data["status"] == "active" and data["ring"] == RINGS[-1] and self.gates(self) == "PROMOTE":
            data["status"] = "completed"
            self._event("COMPLETED", RINGS[-1], None, "Complete.", "saferoll")
        return self.detail()

    async def decision(self, rollout_id):
        if self.rollout_data["status"] not in ("active", "paused"):
            return None
        action = self.gates(self)
        return {"action": action, "reason": self.reason(self, action), "evaluation": self.evaluation(self)}

    async def devices_on(self, version):
        return []

    # ---- helpers ----

    @property
    def actions(self) -> list[str]:
        return [event["action"] for event in self.rollout_data["events"]]

    def _event(self, action, from_ring, to_ring, reason, actor):
        self.rollout_data["events"].append(
            {
                "action": action,
                "from_ring": from_ring,
                "to_ring": to_ring,
                "reason": reason,
                "actor": actor,
                "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            }
        )

    def detail(self) -> dict:
        data = self.rollout_data
        status, ring = data["status"], data["ring"]
        following = RINGS[RINGS.index(ring) + 1] if ring in RINGS[:-1] else None
        return {
            "rollout_id": "rollout_fake",
            "version": data["version"],
            "status": status,
            "state": ring if status == "active" else status,
            "current_ring": ring,
            "next_ring": following,
            "created_at": data["events"][0]["timestamp"],
            "stage_started_at": data["events"][-1]["timestamp"],
            "stages": [{"ring": name, "bake_minutes": 0, "auto_advance": False} for name in RINGS],
            "events": list(data["events"]),
            "blast_radius": {"exposed": 0, "targeted": 0, "fleet": QUICK.devices, "spared": QUICK.devices},
            "deployments": {
                "by_state": {},
                "by_ring": {name: {"targeted": 0, "exposed": 0} for name in RINGS},
            },
        }


def run(scenario: str, api: FakeSafeRoll, fleet: FakeFleet | None = None, *, stop=None) -> ScenarioResult:
    lines: list[str] = []
    fleet = fleet or FakeFleet()

    async def main():
        runner = ScenarioRunner(scenario, api=api, fleet=fleet, timings=QUICK, emit=lines.append, stop=stop)
        return await runner.run()

    result = asyncio.run(main())
    assert lines == result.lines
    return result


def test_it_promotes_each_ring_as_the_release_manager_and_lets_saferoll_complete_the_last():
    api = FakeSafeRoll()

    result = run(HAPPY, api)

    assert result.error is None
    assert api.actions == ["CREATED", "START", "PROMOTE", "PROMOTE", "PROMOTE", "COMPLETED"]
    assert [call[1] for call in api.calls if call[0] == "command"] == [
        "start",
        "promote",
        "promote",
        "promote",
    ]
    assert result.outcome.passed


def test_it_creates_the_release_it_needs_and_its_plan():
    api = FakeSafeRoll()
    del api.releases["v2.0"]

    run(HAPPY, api)

    created = [call[1] for call in api.calls if call[0] == "create_release"]
    assert created[0] == {"version": "v2.0", "is_stable": True, "notes": "The fleet's stable release."}
    assert created[1]["version"] == "v2.1" and created[1]["previous_release"] == "v2.0"
    assert ("create_plan", FAST.plan) in api.calls


def test_it_sets_a_changed_plan_back_to_the_scenarios_and_leaves_a_matching_one_alone():
    changed = FakeSafeRoll(plans={FAST.plan: {**FAST.plan_definition(), "gate_config": {"min_sample": 50}}})
    same = FakeSafeRoll(plans={FAST.plan: FAST.plan_definition()})

    run(HAPPY, changed)
    run(HAPPY, same)

    assert ("update_plan", FAST.plan) in changed.calls
    assert not [call for call in same.calls if call[0] in ("create_plan", "update_plan")]


def test_it_refuses_to_start_while_another_rollout_holds_devices():
    api = FakeSafeRoll(busy=[{"rollout_id": "rollout_old", "version": "v1.9", "state": "paused"}])
    fleet = FakeFleet()

    result = run(HAPPY, api, fleet)

    assert not result.passed
    assert "rollout_old (v1.9, paused)" in result.error
    assert api.rollout_data is None and not fleet.stopped and not fleet.running


def test_it_refuses_a_fleet_with_too_few_devices_in_a_ring(monkeypatch):
    fleet = FakeFleet()
    monkeypatch.setattr(fleet, "status", lambda: {"enrolled": 20, "rings": {"pilot": {"devices": 20}}})

    result = run(HAPPY, FakeSafeRoll(), fleet)

    assert "Too few simulated devices in ring_5, ring_25, ring_100" in result.error
    assert fleet.stopped


def test_a_ring_that_never_passes_times_out_and_its_rollout_is_rolled_back():
    api = FakeSafeRoll(gates=lambda fake: "WAIT")
    fleet = FakeFleet()

    result = run(HAPPY, api, fleet)

    assert not result.passed
    assert result.error.startswith("Timed out after 0 s waiting for pilot to pass its gates and move on.")
    assert "The gates last said WAIT" in result.error
    rollback = [call for call in api.calls if call[:2] == ("command", "rollback")]
    assert rollback and rollback[0][2].startswith("Scenario happy stopped before its end: Timed out")
    assert api.rollout_data["status"] == "rolled_back"
    assert fleet.stopped


def test_a_stop_request_ends_the_run_at_the_next_wait_and_cleans_up():
    api = FakeSafeRoll(gates=lambda fake: "WAIT")
    fleet = FakeFleet()

    async def main():
        stop = asyncio.Event()
        runner = ScenarioRunner(HAPPY, api=api, fleet=fleet, timings=QUICK, emit=lambda line: None, stop=stop)
        task = asyncio.create_task(runner.run())
        while api.rollout_data is None or api.rollout_data["status"] != "active":
            await asyncio.sleep(0)
        stop.set()
        return await task

    result = asyncio.run(main())

    assert result.error == "Stopped (Ctrl-C) before the scenario's end."
    assert api.rollout_data["status"] == "rolled_back"
    assert fleet.stopped and not fleet.running


def test_the_disaster_injects_ring_5_once_promoted_and_waits_for_saferoll():
    def autopilot(fake):
        data = fake.rollout_data
        if fake.injected() and data["status"] == "active":
            data["status"] = "rolled_back"
            fake._event("AUTO_ROLLBACK", data["ring"], None, "Critical: boot success low.", "saferoll")

    fleet = FakeFleet()
    api = FakeSafeRoll(autopilot=autopilot)
    api.injected = lambda: bool(fleet.injected)

    result = run(DISASTER, api, fleet)

    assert result.error is None
    assert fleet.injected == [(0.03, "ring_5")] and fleet.cleared == 1
    assert api.actions == ["CREATED", "START", "PROMOTE", "AUTO_ROLLBACK"]
    assert api.rollout_data["events"][2]["to_ring"] == "ring_5"


def test_the_disaster_promotes_the_pilot_anyway_when_only_its_bake_is_left():
    fleet = FakeFleet()

    def gates(fake):
        return "WAIT" if fake.rollout_data["ring"] == "pilot" else "PROMOTE"

    def evaluation(fake):
        return {
            "install": {"met": True},
            "bake": {"remaining_seconds": 42},
            "gates": {"crash_free_rate": {"passed": True}},
            "health": {"total_devices": QUICK.min_sample},
        }

    def autopilot(fake):
        if fleet.injected and fake.rollout_data["status"] == "active":
            fake.rollout_data["status"] = "rolled_back"
            fake._event("AUTO_ROLLBACK", fake.rollout_data["ring"], None, "Critical.", "saferoll")

    api = FakeSafeRoll(gates=gates, evaluation=evaluation, autopilot=autopilot)

    result = run(DISASTER, api, fleet)

    assert result.error is None
    promote = [call for call in api.calls if call[:2] == ("command", "promote")]
    assert len(promote) == 1 and promote[0][3] == "override"
    assert promote[0][2].startswith("Rehearsal: pilot is healthy")
    assert api.actions == ["CREATED", "START", "PROMOTE", "AUTO_ROLLBACK"]


def test_it_waits_for_the_bake_when_the_pilot_is_still_installing():
    fleet = FakeFleet()
    api = FakeSafeRoll(
        gates=lambda fake: "WAIT",
        evaluation=lambda fake: {
            "install": {"met": False},
            "bake": {"remaining_seconds": 60},
            "health": {"total_devices": QUICK.min_sample},
        },
    )

    result = run(DISASTER, api, fleet)

    assert result.error.startswith("Timed out")
    assert not [call for call in api.calls if call[:2] == ("command", "promote")]
    assert not fleet.injected


def test_the_timeline_shows_each_kind_of_wait_once():
    reasons = [
        "Installing: 0 of 4 devices run v2.1",
        "Installing: 3 of 4 devices run v2.1",
        "Baking: 20 s left of 1 min in pilot",
        "Baking: 10 s left of 1 min in pilot",
    ]
    asked = []

    def gates(fake):
        asked.append(None)
        return "WAIT" if len(asked) <= len(reasons) else "PROMOTE"

    def reason(fake, action):
        return reasons[len(asked) - 1] if action == "WAIT" else "All gates passed."

    result = run(HAPPY, FakeSafeRoll(gates=gates, reason=reason))

    waits = [line for line in result.lines if "gates: WAIT" in line]
    assert len(waits) == 2
    assert "Installing: 0 of 4" in waits[0] and "Baking: 20 s left" in waits[1]


def test_the_disaster_fails_at_once_when_saferoll_pauses_instead():
    def autopilot(fake):
        data = fake.rollout_data
        if fake.injected() and data["status"] == "active":
            data["status"] = "paused"
            fake._event("AUTO_PAUSE", data["ring"], None, "Failing.", "saferoll")

    fleet = FakeFleet()
    api = FakeSafeRoll(autopilot=autopilot)
    api.injected = lambda: bool(fleet.injected)

    result = run(DISASTER, api, fleet)

    assert result.error == "SafeRoll paused the rollout instead of rolling it back."
    # A run that cannot finish leaves nothing holding devices.
    assert api.actions[-2:] == ["AUTO_PAUSE", "ROLLBACK"]


def test_the_manual_pause_pauses_on_pause_clears_resumes_when_healthy_and_finishes():
    fleet = FakeFleet()

    def gates(fake):
        injected = bool(fleet.injected) and not fleet.cleared
        return "PAUSE" if injected and fake.rollout_data["ring"] == "ring_5" else "PROMOTE"

    api = FakeSafeRoll(gates=gates)

    result = run(MANUAL_PAUSE, api, fleet)

    assert result.error is None, result.lines
    assert fleet.injected == [(0.01, "ring_5")] and fleet.cleared == 1
    assert api.actions == [
        "CREATED",
        "START",
        "PROMOTE",
        "PAUSE",
        "RESUME",
        "PROMOTE",
        "PROMOTE",
        "COMPLETED",
    ]
    assert ("command", "pause", PAUSE_REASON) in api.calls
    assert result.outcome.passed


def test_the_manual_pause_leaves_the_pause_to_saferoll_when_it_got_there_first():
    fleet = FakeFleet()

    def autopilot(fake):
        data = fake.rollout_data
        if fleet.injected and not fleet.cleared and data["status"] == "active":
            data["status"] = "paused"
            fake._event("AUTO_PAUSE", data["ring"], None, "Failing 10 evaluations in a row.", "saferoll")

    def gates(fake):
        return "PAUSE" if fleet.injected and not fleet.cleared else "PROMOTE"

    api = FakeSafeRoll(gates=gates, autopilot=autopilot)

    result = run(MANUAL_PAUSE, api, fleet)

    assert result.error is None, result.lines
    assert "PAUSE" not in api.actions and "AUTO_PAUSE" in api.actions
    assert not [call for call in api.calls if call[:2] == ("command", "pause")]


def test_an_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="Unknown scenario"):
        ScenarioRunner("sunny", api=FakeSafeRoll(), fleet=FakeFleet(), timings=QUICK)
