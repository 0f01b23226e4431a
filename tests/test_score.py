"""The health score on its own: weighed from the gates, explaining them, never deciding."""

import pytest

from rollouts.gates import Action, Gate, GateConfig, Signals, evaluate
from rollouts.score import DEFAULT_WEIGHTS, gate_part, health_score
from tests.test_gates import CONFIG, health


def crash_free(value: float) -> Gate:
    return Gate("crash_free_rate", "Crash-free rate", value, 0.99, ">=", value >= 0.99, False, 0.95)


def latency(value: float) -> Gate:
    return Gate("median_latency_ms", "Median latency", value, 500, "<=", value <= 500, False, 1000)


def sev1(count: int) -> Gate:
    return Gate("sev1_incidents", "Open Sev1 incidents", count, 0, "<=", count == 0, needs_sample=False)


def test_a_ring_whose_gates_all_pass_scores_100_whatever_its_headroom():
    decision = evaluate(health(crash_free=0.99, latency=500), CONFIG)

    score = decision.evaluation["score"]
    assert score["value"] == 100
    assert set(score["parts"].values()) == {1.0}
    assert score["weights"] == {
        "crash_free_rate": 3.0,
        "boot_success_rate": 3.0,
        "median_latency_ms": 2.0,
        "sev1_incidents": 1.0,
    }


@pytest.mark.parametrize(
    ("gate", "part"),
    [
        pytest.param(crash_free(0.999), 1.0, id="passing"),
        pytest.param(crash_free(0.9899999), 0.5, id="failing just past the goal: half"),
        pytest.param(crash_free(0.97), 0.25, id="halfway to the critical line"),
        pytest.param(crash_free(0.95), 0.0, id="on the critical line"),
        pytest.param(crash_free(0.5), 0.0, id="far past it"),
        pytest.param(latency(750), 0.25, id="an upper bound, halfway"),
        pytest.param(latency(1200), 0.0, id="an upper bound, past critical"),
        pytest.param(sev1(1), 0.5, id="failing without a critical line"),
    ],
)
def test_each_gate_counts_in_full_when_passing_and_falls_linearly_to_nothing_at_its_critical_line(gate, part):
    assert gate_part(gate) == pytest.approx(part, abs=1e-4)


def test_the_score_is_the_weighted_mean_of_the_parts():
    score = health_score([crash_free(0.97), latency(45), sev1(0)])

    # (3 × 0.25 + 2 × 1 + 1 × 1) / 6 = 62.5, and halves round up
    assert score.value == 63
    assert score.parts == {
        "crash_free_rate": pytest.approx(0.25),
        "median_latency_ms": 1.0,
        "sev1_incidents": 1.0,
    }


def test_a_plans_weights_replace_the_defaults_of_the_gates_they_name():
    gates = [crash_free(0.95), latency(45)]

    assert health_score(gates).value == 40
    assert health_score(gates, {"crash_free_rate": 1, "median_latency_ms": 9}).value == 90


def test_a_gate_the_defaults_do_not_know_weighs_one():
    kpi = Gate("kpi:disk_free", "Disk free", 0.2, 0.1, ">=", True)

    score = health_score([crash_free(0.95), kpi])

    assert score.weights == {"crash_free_rate": 3.0, "kpi:disk_free": 1.0}
    assert score.value == 25


def test_a_gate_of_weight_zero_is_shown_but_counts_for_nothing():
    score = health_score([crash_free(0.95), latency(45)], {"crash_free_rate": 0})

    assert score.value == 100
    assert score.parts["crash_free_rate"] == 0.0


def test_a_ring_with_a_failing_gate_never_scores_100():
    many = [latency(45)] + [Gate(f"kpi:k{i}", "K", 1, 0, ">=", True) for i in range(300)]

    assert health_score([*many, sev1(1)]).value == 99


def test_gates_left_unjudged_for_too_little_data_are_left_out_and_nothing_judged_scores_nothing():
    decision = evaluate(health(devices=3), CONFIG, Signals(deployment_failure_rate=0.0))

    assert decision.action == Action.WAIT
    # The Sev1 and deployment gates stand without a sample, but a ring nobody heard from is not healthy.
    assert decision.evaluation["score"] == {"value": None, "weights": {}, "parts": {}}


def test_a_silent_ring_is_scored_on_its_reporting_rate_once_devices_report():
    decision = evaluate(health(devices=20, expected=50), CONFIG)

    assert decision.evaluation["score"]["parts"]["reporting_rate"] == 0.0
    assert decision.evaluation["score"]["weights"]["reporting_rate"] == DEFAULT_WEIGHTS["reporting_rate"]


@pytest.mark.parametrize(
    ("ring", "action"),
    [
        pytest.param(health(boot=0.96), Action.ROLLBACK, id="one critical gate among passing ones"),
        pytest.param(health(crash_free=0.985), Action.PAUSE, id="one gate just failing"),
    ],
)
def test_the_score_explains_the_decision_and_never_changes_it(ring, action):
    # Weights that make the failing gate count for almost nothing: the score is high, the gates still decide.
    config = GateConfig.from_dict(
        {"min_sample": 10, "score_weights": {"crash_free_rate": 0.01, "boot_success_rate": 0.01}}
    )

    decision = evaluate(ring, config)

    assert decision.action == action == evaluate(ring, CONFIG).action
    assert decision.evaluation["score"]["value"] >= 95


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([3, 2], "score_weights must be an object"),
        ({"crash_free_rate": -1}, "score_weights.crash_free_rate must not be negative"),
        ({"median_latency_ms": "heavy"}, "score_weights.median_latency_ms must be a number"),
        ({"kpi:disk": True}, "score_weights.kpi:disk must be a number"),
        ({"boot_success_rate": float("nan")}, "score_weights.boot_success_rate must be a number"),
    ],
)
def test_it_refuses_bad_score_weights_naming_the_gate(weights, message):
    with pytest.raises(ValueError, match=message):
        GateConfig.from_dict({"score_weights": weights})


def test_score_weights_round_trip_and_leave_the_settings_hashable():
    disk = {"metric": "disk", "operator": ">=", "threshold": 10}
    config = GateConfig.from_dict(
        {"custom_gates": [disk], "score_weights": {"crash_free_rate": 5, "kpi:disk": 0.5}}
    )

    assert config.to_dict()["score_weights"] == {"crash_free_rate": 5.0, "kpi:disk": 0.5}
    assert GateConfig.from_dict(config.to_dict()) == config
    assert GateConfig().to_dict()["score_weights"] == {}
    unweighted = GateConfig.from_dict({"custom_gates": [disk]})
    assert hash(config) == hash(unweighted)
    assert config != unweighted


def test_a_weight_must_name_a_gate_of_the_plan():
    with pytest.raises(ValueError, match=r"score_weights names no gate of this plan: latency_ms\. Gates: "):
        GateConfig.from_dict({"score_weights": {"latency_ms": 2}})

    custom = {"metric": "disk_free_pct", "operator": ">=", "threshold": 10}
    config = GateConfig.from_dict(
        {"custom_gates": [custom], "score_weights": {"kpi:disk_free_pct": 2, "crash_rate_vs_baseline": 1}}
    )
    assert config.score_weights == {"kpi:disk_free_pct": 2.0, "crash_rate_vs_baseline": 1.0}
