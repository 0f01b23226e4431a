"""The what-if replay: simulated rollouts of a plan judged by the real gate engine and autopilot
policy over a statistical fleet model. Small fleets and few runs: each test takes a moment."""

import random
from dataclasses import replace

import pytest

from rollouts.gates import GateConfig
from rollouts.services.plans import preset_definitions
from rollouts.whatif import FleetModel, WhatIfPlan, replay
from rollouts.whatif import run as replay_module
from rollouts.whatif.run import Run
from rollouts.whatif.scenarios import RELEASE_MIX, OutsideEvent

RINGS = {"pilot": 10, "ring_5": 5, "ring_25": 25, "ring_100": 60}
FLEET = FleetModel(devices=20_000, ring_shares=RINGS)


def preset(name: str, **gates) -> WhatIfPlan:
    definition = next(d for d in preset_definitions() if d["name"] == name)
    return WhatIfPlan(name, definition["stages"], {**definition["gate_config"], **gates})


def release(name: str):
    return next(kind for kind in RELEASE_MIX if kind.name == name)


def play(plan: WhatIfPlan, kind: str, *, seed: int = 1, event: OutsideEvent | None = None):
    config = GateConfig.from_dict(plan.gate_config)
    return Run(plan, FLEET, config, release(kind), event, random.Random(seed)).play(0)


def test_it_plays_the_same_runs_for_the_same_seed():
    first = replay(preset("demo"), runs=6, seed=7, fleet=FLEET)
    again = replay(preset("demo"), runs=6, seed=7, fleet=FLEET)
    other = replay(preset("demo"), runs=6, seed=8, fleet=FLEET)

    assert first.results == again.results
    assert first.table() == again.table()
    assert other.results != first.results


def test_it_comes_out_the_same_in_several_processes():
    alone = replay(preset("demo"), runs=6, seed=3, fleet=FLEET)
    shared = replay(preset("demo"), runs=6, seed=3, fleet=FLEET, workers=2)

    assert shared.results == alone.results


def test_a_good_release_at_the_default_gates_mostly_goes_through_every_ring():
    results = [play(preset("demo"), "good", seed=seed) for seed in range(8)]

    completed = [result for result in results if result.outcome == "completed"]
    assert len(completed) >= 7
    assert all(result.stage == "ring_100" and not result.halted for result in completed)
    assert completed[0].exposed_share > 0.9


def test_a_severe_bad_release_is_rolled_back_in_the_pilot_within_seconds():
    results = [play(preset("demo"), "critical", seed=seed) for seed in range(3)]

    assert all(result.outcome == "rollback" and result.before_guard for result in results)
    assert all(result.stage == "pilot" for result in results)
    assert all(result.detect_seconds is not None and result.detect_seconds < 60 for result in results)
    assert all(result.exposed_share < 0.1 for result in results)
    assert "crash-free rate" in results[0].reason


def test_it_judges_with_the_real_gate_engine():
    """A plan whose crash-free threshold no healthy ring can meet halts good releases, once nothing
    compares the ring with the previous release (which fails that threshold just as much)."""
    impossible = {"crash_free_min": 0.9999, "crash_free_critical": 0.5}
    strict = replace(preset("demo"), gate_config={**impossible, "baseline_comparison": False})
    compared = replace(preset("demo"), gate_config=impossible)

    result = play(strict, "good")

    assert result.outcome == "pause"
    assert result.stage == "pilot"
    assert "Crash-free rate" in result.reason
    assert play(compared, "good").outcome == "unfinished"


def test_the_engine_gets_the_ring_its_baseline_and_their_spread(monkeypatch):
    seen = []

    def spy(health, config, signals=None):
        seen.append((health, signals))
        return evaluate(health, config, signals)

    evaluate = replay_module.evaluate
    monkeypatch.setattr(replay_module, "evaluate", spy)

    play(preset("demo"), "good")

    health, signals = seen[-1]
    assert health.checks > 0 and health.expected_devices > 0
    baseline = signals.baseline
    assert baseline is not None
    for side in (baseline.window, baseline.recent, baseline.ring_recent):
        assert side.total_devices > 0
        assert side.spread is not None and side.spread.devices == side.total_devices
    assert baseline.ring_recent.checks < health.checks
    assert signals.install is not None and signals.bake is not None
    assert 0.98 < health.crash_free_rate < 1.0
    assert 30 < health.median_latency_ms < 70


def test_an_outside_event_hits_the_baseline_as_much_as_the_release(monkeypatch):
    seen = []
    evaluate = replay_module.evaluate
    monkeypatch.setattr(
        replay_module, "evaluate", lambda h, c, s=None: seen.append((h, s)) or evaluate(h, c, s)
    )
    spike = OutsideEvent("latency_spike", start=400, duration=600, share=1.0, latency_ms=1200, silent=0.0)

    play(preset("staging"), "good", event=spike)

    during = [signals.baseline for _, signals in seen if signals.baseline.ring_recent.median_latency_ms > 800]
    assert during
    # Over the same last minute, the previous release is as slow as the ring, but for a judgement
    # or two at the spike's edge, where a ring still installing weighs its latest checks more.
    slow = [baseline.recent.median_latency_ms > 800 for baseline in during]
    assert sum(slow) >= 0.9 * len(slow)


def test_the_figures_are_named_values_with_units():
    report = replay(preset("demo"), runs=10, seed=2, fleet=FLEET)
    figures = report.figures()

    for name in (
        "safety.bad_stopped_before_ring_25",
        "safety.good_halted",
        "safety.median_detect_seconds",
        "safety.p95_detect_seconds",
        "safety.median_exposed_share",
        "safety.scenario.good.halted",
    ):
        assert set(figures[name]) == {"value", "unit"}
    assert figures["safety.good_halted"]["unit"] == "share"
    assert figures["safety.median_detect_seconds"]["unit"] == "s"
    assert figures["safety.runs"]["value"] == 10


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"runs": 0}, "runs"),
        ({"outside_events": 1.5}, "between 0 and 1"),
        ({"outside_events": -0.1}, "between"),
    ],
)
def test_it_refuses_arguments_out_of_range(arguments, message):
    with pytest.raises(ValueError, match=message):
        replay(preset("demo"), **{"runs": 1, "seed": 1, "fleet": FLEET, **arguments})
