"""Whether a rollout ended as its scenario expects, judged from its GET /api/rollouts/{id} answer;
and the summary that says so."""

import pytest

from simulator.scenarios.judge import Check, Outcome, ScenarioResult, judge
from simulator.scenarios.presets import DEMO, DISASTER, FAST, HAPPY, MANUAL_PAUSE, plan_matches, timings_for
from simulator.scenarios.report import format_result

RINGS = ("pilot", "ring_5", "ring_25", "ring_100")


def rollout(
    status: str, actions: list[tuple[str, str | None]], *, exposed: dict | None = None, fleet: int = 100
):
    """A rollout's detail: its status, its events as (action, ring), exposure by ring."""
    exposed = exposed or {}
    by_ring = {ring: {"targeted": exposed.get(ring, 0), "exposed": exposed.get(ring, 0)} for ring in RINGS}
    total = sum(exposed.values())
    return {
        "rollout_id": "rollout_1_abc",
        "version": "v2.1_buggy",
        "status": status,
        "state": status,
        "events": [
            {
                "action": action,
                "from_ring": ring,
                "to_ring": None,
                "actor": "saferoll" if action.startswith("AUTO_") else "scenario",
            }
            for action, ring in actions
        ],
        "blast_radius": {"exposed": total, "targeted": total, "fleet": fleet, "spared": fleet - total},
        "deployments": {"by_state": {}, "by_ring": by_ring},
    }


def failed(outcome: Outcome) -> list[str]:
    return [check.label for check in outcome.checks if not check.passed]


HAPPY_ACTIONS = [
    ("CREATED", None),
    ("START", None),
    ("PROMOTE", "pilot"),
    ("PROMOTE", "ring_5"),
    ("COMPLETED", "ring_100"),
]
DISASTER_ACTIONS = [("CREATED", None), ("START", None), ("PROMOTE", "pilot"), ("AUTO_ROLLBACK", "ring_5")]
CONTAINED = {"pilot": 10, "ring_5": 5}


def test_the_happy_path_passes_when_completed_without_a_rollback():
    assert judge(HAPPY, rollout("completed", HAPPY_ACTIONS)).passed


def test_the_happy_path_fails_when_rolled_back_or_unfinished():
    assert failed(
        judge(HAPPY, rollout("rolled_back", [*HAPPY_ACTIONS[:3], ("AUTO_ROLLBACK", "ring_5")]))
    ) == [
        "completed (ended rolled_back)",
        "no rollback",
    ]
    assert failed(judge(HAPPY, rollout("active", HAPPY_ACTIONS[:3]))) == ["completed (ended active)"]


def test_the_disaster_passes_when_saferoll_rolls_back_in_ring_5_and_the_rest_is_spared():
    outcome = judge(
        DISASTER,
        rollout("rolled_back", DISASTER_ACTIONS, exposed=CONTAINED),
        seen_rings=frozenset({"ring_5"}),
    )

    assert outcome.passed, failed(outcome)


def test_the_disaster_fails_when_a_person_rolled_back():
    detail = rollout("rolled_back", [*DISASTER_ACTIONS[:3], ("ROLLBACK", "ring_5")], exposed=CONTAINED)

    assert failed(judge(DISASTER, detail)) == [
        "rolled back by SafeRoll (AUTO_ROLLBACK in ring_5), not by a person"
    ]


def test_the_disaster_fails_when_saferoll_only_paused():
    detail = rollout("paused", [*DISASTER_ACTIONS[:3], ("AUTO_PAUSE", "ring_5")], exposed=CONTAINED)

    assert failed(judge(DISASTER, detail)) == [
        "rolled back (ended paused)",
        "rolled back by SafeRoll (AUTO_ROLLBACK in ring_5), not by a person",
    ]


def test_the_disaster_fails_when_the_release_went_beyond_ring_5():
    detail = rollout(
        "rolled_back",
        [*DISASTER_ACTIONS[:3], ("PROMOTE", "ring_5"), ("AUTO_ROLLBACK", "ring_25")],
        exposed={**CONTAINED, "ring_25": 25},
    )

    assert failed(judge(DISASTER, detail)) == [
        "rolled back by SafeRoll (AUTO_ROLLBACK in ring_5), not by a person",
        "no deployment outside pilot and ring_5 (found: ring_25)",
    ]


def test_the_disaster_fails_when_a_device_outside_was_seen_running_the_release():
    detail = rollout("rolled_back", DISASTER_ACTIONS, exposed=CONTAINED)

    assert failed(judge(DISASTER, detail, seen_rings=frozenset({"pilot", "ring_100"}))) == [
        "no device outside pilot and ring_5 seen running the release (seen in: ring_100)"
    ]


def test_the_disaster_fails_when_the_failure_never_reached_ring_5():
    detail = rollout(
        "rolled_back", [*DISASTER_ACTIONS[:2], ("AUTO_ROLLBACK", "ring_5")], exposed={"pilot": 10}
    )

    assert failed(judge(DISASTER, detail)) == ["the failure reached ring_5 (devices exposed there)"]


MANUAL_ACTIONS = [
    ("START", None),
    ("PROMOTE", "pilot"),
    ("PAUSE", "ring_5"),
    ("RESUME", None),
    ("COMPLETED", "ring_100"),
]


@pytest.mark.parametrize("pause", ["PAUSE", "AUTO_PAUSE"])
def test_the_manual_pause_passes_with_a_pause_a_later_resume_and_completion(pause):
    actions = [(pause if action == "PAUSE" else action, ring) for action, ring in MANUAL_ACTIONS]

    assert judge(MANUAL_PAUSE, rollout("completed", actions)).passed


def test_the_manual_pause_fails_without_a_pause_or_without_a_resume_after_it():
    no_pause = [item for item in MANUAL_ACTIONS if item[0] != "PAUSE"]
    resume_first = [("START", None), ("RESUME", None), ("PAUSE", "ring_5"), ("COMPLETED", "ring_100")]

    assert failed(judge(MANUAL_PAUSE, rollout("completed", no_pause))) == [
        "paused (PAUSE or AUTO_PAUSE) in the timeline",
        "resumed (RESUME) after the pause",
    ]
    assert failed(judge(MANUAL_PAUSE, rollout("completed", resume_first))) == [
        "resumed (RESUME) after the pause"
    ]


def test_the_manual_pause_fails_when_it_ends_rolled_back():
    actions = [*MANUAL_ACTIONS[:3], ("AUTO_ROLLBACK", "ring_5")]

    assert failed(judge(MANUAL_PAUSE, rollout("rolled_back", actions))) == [
        "completed (ended rolled_back)",
        "resumed (RESUME) after the pause",
        "no rollback",
    ]


def test_no_rollout_is_no_pass_and_an_unknown_scenario_is_refused():
    assert not judge(HAPPY, None).passed
    with pytest.raises(ValueError, match="Unknown scenario"):
        judge("sunny", rollout("completed", []))


def test_the_summary_gives_the_blast_radius_each_check_and_the_verdict():
    detail = rollout("rolled_back", DISASTER_ACTIONS, exposed=CONTAINED, fleet=1100)
    result = ScenarioResult(
        scenario=DISASTER,
        outcome=judge(DISASTER, detail),
        rollout=detail,
        lines=[],
        simulated_devices=100,
        duration=83,
    )

    lines = format_result(result)

    assert lines[1] == "Scenario disaster: rollout rollout_1_abc of v2.1_buggy ended rolled_back after 1:23."
    assert (
        lines[2] == "  Exposed: 15 of 1100 devices received v2.1_buggy (1.4%); by ring: pilot 10, ring_5 5."
    )
    assert lines[3] == "  Spared:  1085 of 1100 devices never received it (98.6%)."
    assert "1000 of the server's 1100 devices (90.9%) are not simulated" in lines[4]
    assert "  PASS  rolled back (ended rolled_back)" in lines
    assert lines[-1] == "Result: PASS (disaster)"


def test_an_error_fails_the_run_whatever_the_checks_say():
    result = ScenarioResult(
        scenario=HAPPY,
        outcome=Outcome(HAPPY, (Check("completed", True),)),
        rollout=None,
        lines=[],
        error="Timed out.",
    )

    assert not result.passed
    assert format_result(result)[-2:] == ["  FAIL  Timed out.", "Result: FAIL (happy)"]


def test_fast_timings_are_the_same_plan_with_smaller_numbers():
    fast, demo = FAST.plan_definition(), DEMO.plan_definition()

    assert (
        [stage["ring"] for stage in fast["stages"]]
        == [stage["ring"] for stage in demo["stages"]]
        == list(RINGS)
    )
    assert {stage["bake_minutes"] for stage in fast["stages"]} == {0}
    assert not any(stage["auto_advance"] for stage in fast["stages"] + demo["stages"])
    assert demo["gate_config"] == {}
    assert FAST.min_sample == 3 and DEMO.min_sample == 10


def test_the_fleet_size_and_interval_can_be_overridden():
    timings = timings_for(fast=True, devices=80, interval=1.5)

    assert (timings.devices, timings.interval, timings.plan) == (80, 1.5, FAST.plan)
    assert timings_for(fast=False) is DEMO


def test_a_storedplan_matches_when_it_has_the_scenarios_stages_and_gates():
    wanted = FAST.plan_definition()
    stored = {
        "stages": [{**stage, "description": ""} for stage in wanted["stages"]],
        "gate_config": dict(wanted["gate_config"]),
    }

    assert plan_matches(stored, wanted)
    assert not plan_matches({**stored, "gate_config": {**stored["gate_config"], "min_sample": 50}}, wanted)
    assert not plan_matches(
        {**stored, "gate_config": {**stored["gate_config"], "block_on_sev1": False}}, wanted
    )
    assert not plan_matches({**stored, "stages": stored["stages"][:3]}, wanted)
