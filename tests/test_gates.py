"""The gate engine on its own: every row of the 000 §9.3 decision table, and what SafeRoll adds."""

import pytest

from rollouts.gates import Action, GateConfig, Signals, evaluate, wilson_upper_bound
from telemetry.health import RingHealth

CONFIG = GateConfig(min_sample=10)


def health(crash_free=0.995, boot=0.998, latency=45, devices=100, expected=None, **kpis) -> RingHealth:
    return RingHealth(
        ring="ring_5",
        total_devices=devices,
        crash_free_rate=crash_free,
        boot_success_rate=boot,
        median_latency_ms=latency,
        expected_devices=expected,
        **kpis,
    )


@pytest.mark.parametrize(
    ("crash_free", "boot", "latency", "expected"),
    [
        pytest.param(0.99, 0.995, 500, Action.PROMOTE, id="all pass (on the thresholds)"),
        pytest.param(0.98, 0.996, 450, Action.PAUSE, id="one fails"),
        pytest.param(0.97, 0.99, 600, Action.PAUSE, id="two fail"),
        pytest.param(0.94, 0.999, 40, Action.ROLLBACK, id="crash-free critical"),
        pytest.param(0.94, 0.90, 2000, Action.ROLLBACK, id="crash-free critical, anything else"),
        pytest.param(0.999, 0.96, 40, Action.ROLLBACK, id="boot success critical"),
        pytest.param(0.98, 0.96, 700, Action.ROLLBACK, id="boot success critical, anything else"),
    ],
)
def test_it_decides_every_row_of_the_decision_table(crash_free, boot, latency, expected):
    assert evaluate(health(crash_free, boot, latency), CONFIG).action == expected


def test_it_pauses_but_does_not_roll_back_on_critical_latency():
    decision = evaluate(health(latency=1500), CONFIG)
    assert decision.action == Action.PAUSE
    assert decision.evaluation["gates"]["median_latency_ms"]["critical"] is True


def test_it_reports_each_gate_with_value_threshold_operator_and_result():
    decision = evaluate(health(crash_free=0.985), CONFIG)
    gates = decision.evaluation["gates"]
    assert gates["crash_free_rate"] == {
        "value": 0.985,
        "threshold": 0.99,
        "operator": ">=",
        "passed": False,
        "critical_threshold": 0.95,
        "critical": False,
    }
    assert gates["median_latency_ms"]["operator"] == "<="
    assert decision.evaluation["overall"] == "FAIL"
    assert decision.evaluation["health"]["total_devices"] == 100
    assert "Crash-free rate 98.5%" in decision.reason


def test_it_waits_instead_of_promoting_when_too_few_devices_reported():
    decision = evaluate(health(devices=3), CONFIG)
    assert decision.action == Action.WAIT
    assert "3 of the 10" in decision.reason
    assert decision.evaluation["overall"] == "WAIT"


def test_it_never_reads_an_empty_window_as_healthy():
    decision = evaluate(RingHealth(ring="pilot"), CONFIG)
    assert decision.action == Action.WAIT


def test_it_does_not_roll_back_on_a_sample_too_small_to_tell():
    assert evaluate(health(crash_free=0.5, devices=2), CONFIG).action == Action.WAIT


def test_it_rolls_back_when_most_of_the_ring_goes_silent():
    decision = evaluate(health(devices=20, expected=50), CONFIG)
    assert decision.action == Action.ROLLBACK
    assert "reporting rate 40.0%" in decision.reason


def test_silence_is_a_failure_signal_even_below_the_minimum_sample():
    assert evaluate(health(devices=4, expected=50), CONFIG).action == Action.ROLLBACK


def test_it_pauses_when_some_devices_stop_reporting():
    assert evaluate(health(devices=40, expected=50), CONFIG).action == Action.PAUSE


def test_it_pauses_on_an_open_sev1_incident_even_without_data():
    decision = evaluate(health(devices=0), CONFIG, Signals(open_sev1_incidents=("TVs black in ICU",)))
    assert decision.action == Action.PAUSE
    assert decision.evaluation["open_sev1_incidents"] == ["TVs black in ICU"]


def test_it_pauses_when_too_many_deployments_fail():
    decision = evaluate(health(), CONFIG, Signals(deployment_failure_rate=0.10))
    assert decision.action == Action.PAUSE
    assert decision.evaluation["gates"]["deployment_failure_rate"]["passed"] is False


@pytest.mark.parametrize(
    ("setting", "kpi", "value"),
    [
        ({"availability_min": 0.995}, "availability", 0.99),
        ({"event_lag_max_ms": 2000}, "event_lag_ms", 5000),
        ({"dropped_events_max": 1}, "dropped_events", 3),
    ],
)
def test_it_pauses_on_the_optional_kpi_gates_of_a_plan(setting, kpi, value):
    config = GateConfig.from_dict({"min_sample": 10, **setting})
    assert evaluate(health(**{kpi: value}), config).action == Action.PAUSE
    assert evaluate(health(**{kpi: value}), CONFIG).action == Action.PROMOTE


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"crash_free_min": "high"}, "crash_free_min must be a number"),
        ({"crash_free_min": 1.5}, "share between 0 and 1"),
        ({"min_sample": -1}, "must not be negative"),
        ({"min_sample": 2.5}, "whole number"),
        ({"surprise": 1}, "Unknown gate setting"),
        ({"crash_free_min": 0.9, "crash_free_critical": 0.95}, "crash_free_critical must not be above"),
        ({"block_on_sev1": "yes"}, "true or false"),
        # Durations a rollout's evaluations could not compute with.
        ({"window_minutes": 10**15}, r"window_minutes must be between 1 and 1440 \(a day\)"),
        ({"reporting_grace_seconds": 10**15}, r"reporting_grace_seconds must be at most 86400 \(a day\)"),
    ],
)
def test_it_refuses_bad_gate_settings_with_a_clear_message(data, message):
    with pytest.raises(ValueError, match=message):
        GateConfig.from_dict(data)


def test_it_round_trips_its_settings():
    config = GateConfig.from_dict({"min_sample": 25, "availability_min": 0.99})
    assert GateConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("boot", "checks", "expected"),
    [
        pytest.param(58 / 60, 60, Action.PAUSE, id="2 failed boots in 60: below the line, not surely"),
        pytest.param(193 / 200, 200, Action.PAUSE, id="96.5% of 200: could still be 97%"),
        pytest.param(52 / 60, 60, Action.ROLLBACK, id="8 failed boots in 60"),
        pytest.param(880 / 1000, 1000, Action.ROLLBACK, id="88% of 1000"),
        pytest.param(0.96, None, Action.ROLLBACK, id="number of checks unknown: the rate as it stands"),
    ],
)
def test_it_rolls_back_on_boot_success_only_when_sure_it_is_below_the_critical_line(boot, checks, expected):
    assert evaluate(health(boot=boot, checks=checks), CONFIG).action == expected


def test_it_says_how_sure_it_is_when_boot_success_is_critical():
    decision = evaluate(health(boot=52 / 60, checks=60), CONFIG)

    assert "boot success rate 86.7% is below 97.0% (at most 93.1% with 95% confidence)" in decision.reason
    assert decision.evaluation["gates"]["boot_success_rate"]["upper_bound"] == 0.9309
    assert decision.evaluation["health"]["checks"] == 60


def test_it_shows_a_failing_value_with_the_decimals_that_tell_it_from_the_threshold():
    decision = evaluate(health(crash_free=0.9896), CONFIG)

    assert decision.action == Action.PAUSE
    assert "Crash-free rate 98.96% (goal >= 99.00%)" in decision.reason


def test_wilson_bound_stays_within_a_share_and_narrows_with_more_checks():
    assert wilson_upper_bound(1.0, 5) == 1.0
    assert (
        0.9 < wilson_upper_bound(0.9, 1000) < wilson_upper_bound(0.9, 100) < wilson_upper_bound(0.9, 10) < 1
    )
