"""Gates on custom KPIs: a plan's definitions, checked, and judged like the built-in gates."""

import math

import pytest

from rollouts.gates import (
    Action,
    CustomGateDefinition,
    GateConfig,
    custom_metric_names,
    custom_metric_vs_baseline,
    evaluate,
)
from telemetry.health import RingHealth

LOOPS = {"metric": "crash_loops", "label": "Crash loops per check", "operator": "<=", "threshold": 0.05}
DISK = {"metric": "disk_free_pct", "operator": ">=", "threshold": 20, "critical_threshold": 5}


def config(*definitions: dict, **settings) -> GateConfig:
    return GateConfig.from_dict({"min_sample": 10, "custom_gates": list(definitions), **settings})


def health(devices: int = 100, **metrics: float) -> RingHealth:
    return RingHealth(
        ring="ring_5",
        total_devices=devices,
        crash_free_rate=0.995,
        boot_success_rate=0.999,
        median_latency_ms=45,
        checks=devices * 10,
        metrics=metrics,
    )


# --- definitions ---------------------------------------------------------------------------------


def test_a_definition_fills_its_defaults_and_survives_a_round_trip():
    parsed = config(LOOPS, DISK)

    assert parsed.custom_gates == (
        CustomGateDefinition(
            metric="crash_loops", operator="<=", threshold=0.05, label="Crash loops per check"
        ),
        CustomGateDefinition(metric="disk_free_pct", operator=">=", threshold=20.0, critical_threshold=5.0),
    )
    assert GateConfig.from_dict(parsed.to_dict()) == parsed
    assert custom_metric_names(parsed) == ("crash_loops", "disk_free_pct")


@pytest.mark.parametrize(
    ("custom_gates", "message"),
    [
        ({"metric": "x"}, "custom_gates must be a list of gate definitions."),
        (["crash_loops"], "custom_gates[0] must be an object"),
        ([{**LOOPS, "colour": "red"}], "custom_gates[0] has unknown key(s): colour."),
        ([{"operator": "<=", "threshold": 1}], "custom_gates[0].metric is required."),
        ([{"metric": "x", "threshold": 1}], "custom_gates[0].operator is required."),
        ([{"metric": "x", "operator": "<="}], "custom_gates[0].threshold is required."),
        (
            [{**LOOPS, "metric": "Crash-Loops"}],
            "custom_gates[0].metric: The metric name 'Crash-Loops' is not allowed",
        ),
        (
            [{**LOOPS, "metric": "crash_free"}],
            "custom_gates[0].metric: The metric name 'crash_free' is a built-in",
        ),
        ([{**LOOPS, "metric": "m" * 41}], "longer than 40 characters"),
        ([{**LOOPS, "operator": ">"}], "custom_gates[0].operator must be '>=' or '<='."),
        ([{**LOOPS, "threshold": "high"}], "custom_gates[0].threshold must be a number."),
        ([{**LOOPS, "threshold": True}], "custom_gates[0].threshold must be a number."),
        ([{**LOOPS, "threshold": math.inf}], "custom_gates[0].threshold must be a finite number."),
        ([{**LOOPS, "label": 5}], "custom_gates[0].label must be text"),
        ([{**LOOPS, "label": "l" * 61}], "custom_gates[0].label must be text of at most 60 characters."),
        ([{**LOOPS, "critical_threshold": 0.01}], "custom_gates[0].critical_threshold must not be below"),
        ([{**DISK, "critical_threshold": 30}], "custom_gates[0].critical_threshold must not be above"),
        ([{**LOOPS, "rolls_back": True}], "custom_gates[0].rolls_back needs a critical_threshold."),
        ([{**LOOPS, "rolls_back": "yes"}], "custom_gates[0].rolls_back must be true or false."),
        ([{**LOOPS, "baseline": 1}], "custom_gates[0].baseline must be true or false."),
        ([{**LOOPS, "baseline_ratio_max": 0.5}], "custom_gates[0].baseline_ratio_max must be at least 1."),
        ([LOOPS, DISK, LOOPS], "custom_gates[2].metric: 'crash_loops' has a gate already."),
        ([{**LOOPS, "metric": f"m{index}"} for index in range(21)], "at most 20 gates"),
    ],
)
def test_a_bad_definition_is_refused_naming_the_key(custom_gates, message):
    with pytest.raises(ValueError) as refused:
        GateConfig.from_dict({"custom_gates": custom_gates})

    assert message in str(refused.value)


# --- verdicts ------------------------------------------------------------------------------------


def test_a_custom_gate_that_passes_lets_the_ring_promote():
    decision = evaluate(health(crash_loops=0.01, disk_free_pct=60.0), config(LOOPS, DISK))

    assert decision.action == Action.PROMOTE
    assert decision.evaluation["gates"]["kpi:crash_loops"] == {
        "value": 0.01,
        "threshold": 0.05,
        "operator": "<=",
        "passed": True,
        "custom": True,
        "metric": "crash_loops",
        "label": "Crash loops per check",
        "compare_baseline": False,
    }


def test_a_failing_custom_gate_pauses_and_says_why():
    decision = evaluate(health(crash_loops=0.4, disk_free_pct=60.0), config(LOOPS, DISK))

    assert decision.action == Action.PAUSE
    assert "Crash loops per check 0.4 (goal <= 0.05)" in decision.reason


def test_a_critical_custom_gate_only_pauses_unless_it_rolls_back():
    critical = {**DISK, "label": "Disk free"}

    paused = evaluate(health(disk_free_pct=2.0), config(critical))
    rolled_back = evaluate(health(disk_free_pct=2.0), config({**critical, "rolls_back": True}))

    assert paused.action == Action.PAUSE
    assert paused.evaluation["gates"]["kpi:disk_free_pct"]["critical"] is True
    assert rolled_back.action == Action.ROLLBACK
    assert rolled_back.reason == "Critical: disk free 2 is below 5."


def test_a_value_on_the_critical_line_is_not_critical():
    decision = evaluate(health(disk_free_pct=5.0), config({**DISK, "rolls_back": True}))

    assert decision.action == Action.PAUSE


def test_a_metric_nobody_reported_is_not_judged():
    decision = evaluate(health(disk_free_pct=60.0), config(LOOPS, DISK))

    assert decision.action == Action.PROMOTE
    gate = decision.evaluation["gates"]["kpi:crash_loops"]
    assert (gate["value"], gate["passed"], gate["judged"]) == (None, True, False)


def test_a_custom_gate_waits_for_the_minimum_sample_like_the_built_ins():
    decision = evaluate(health(devices=3, disk_free_pct=1.0), config({**DISK, "rolls_back": True}))

    assert decision.action == Action.WAIT


def test_the_evaluation_carries_the_metric_means_in_its_health():
    decision = evaluate(health(crash_loops=0.01), config(LOOPS))

    assert decision.evaluation["health"]["metrics"] == {"crash_loops": 0.01}


def test_the_baseline_flag_is_kept_and_shown():
    decision = evaluate(health(crash_loops=0.0), config({**LOOPS, "baseline": True}))

    assert decision.evaluation["gates"]["kpi:crash_loops"]["compare_baseline"] is True


# --- against the baseline ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "ring", "baseline", "passed", "ratio"),
    [
        pytest.param(LOOPS, 0.12, 0.1, True, 1.2, id="lower is better, a little worse"),
        pytest.param(LOOPS, 0.2, 0.1, False, 2.0, id="lower is better, twice as bad"),
        pytest.param(LOOPS, 0.05, 0.1, True, 0.5, id="lower is better, better than before"),
        pytest.param(DISK, 40.0, 50.0, True, 1.25, id="higher is better, a little worse"),
        pytest.param(DISK, 20.0, 50.0, False, 2.5, id="higher is better, much worse"),
        pytest.param(LOOPS, 0.0, 0.0, True, 1.0, id="zero on both sides"),
        pytest.param(LOOPS, 0.01, 0.0, False, math.inf, id="something where there was nothing"),
        pytest.param({**LOOPS, "baseline_ratio_max": 3}, 0.2, 0.1, True, 2.0, id="a plan allowing more"),
    ],
)
def test_a_custom_metric_is_judged_against_the_baseline_by_relative_change(
    definition, ring, baseline, passed, ratio
):
    verdict = custom_metric_vs_baseline(config(definition).custom_gates[0], ring, baseline)

    assert (verdict.passed, verdict.ratio) == (passed, pytest.approx(ratio))


def test_the_baseline_verdict_names_both_figures():
    verdict = custom_metric_vs_baseline(config(LOOPS).custom_gates[0], 0.2, 0.1)

    assert verdict.reason == (
        "Crash loops per check 0.2 against 0.1 on the previous release: 2.00× as bad, beyond the 1.5× allowed"
    )


@pytest.mark.parametrize(("ring", "baseline"), [(None, 0.1), (0.1, None), (None, None)])
def test_no_data_on_either_side_is_not_compared(ring, baseline):
    verdict = custom_metric_vs_baseline(config(LOOPS).custom_gates[0], ring, baseline)

    assert (verdict.passed, verdict.ratio) == (None, None)
