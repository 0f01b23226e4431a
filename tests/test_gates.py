"""The gate engine on its own: every row of the 000 §9.3 decision table, and what SafeRoll adds."""

import datetime as dt

import pytest

from rollouts.gates import (
    Action,
    BakeClock,
    GateConfig,
    InstallProgress,
    Signals,
    evaluate,
    human_duration,
)
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
    ("devices", "checks", "booted", "expected"),
    [
        pytest.param(500, 500, 480, Action.ROLLBACK, id="500 devices, 20 failing to boot: 96.0%"),
        pytest.param(500, 3000, 2880, Action.ROLLBACK, id="96.0% of 3,000 checks"),
        pytest.param(50, 200, 193, Action.ROLLBACK, id="96.5% of 200 checks: at the minimum"),
        pytest.param(100, 200, 198, Action.PAUSE, id="99.0% of 200 checks"),
        pytest.param(100, 200, 199, Action.PROMOTE, id="one failed boot in 200: 99.5%"),
        pytest.param(50, 150, 149, Action.WAIT, id="one failed boot in the first 150 checks"),
        pytest.param(50, 150, 100, Action.WAIT, id="below the minimum, however bad"),
        pytest.param(5, 400, 300, Action.WAIT, id="too few devices"),
    ],
)
def test_it_judges_boot_success_as_it_stands_once_the_sample_is_enough(devices, checks, booted, expected):
    ring = RingHealth(ring="pilot", total_devices=devices, checks=checks, boot_success_rate=booted / checks)

    assert evaluate(ring, CONFIG).action == expected


def test_it_says_how_much_data_is_missing():
    ring = RingHealth(ring="pilot", total_devices=8, checks=150, window_minutes=5)

    decision = evaluate(ring, CONFIG)

    assert decision.action == Action.WAIT
    assert decision.reason == (
        "Too little data: 8 of the 10 devices and 150 of the 200 checks needed reported in the last 5 minutes."
    )


def test_it_shows_a_failing_value_with_the_decimals_that_tell_it_from_the_threshold():
    decision = evaluate(health(crash_free=0.9896), CONFIG)

    assert decision.action == Action.PAUSE
    assert "Crash-free rate 98.96% (goal >= 99.00%)" in decision.reason


# --- Install share and bake ----------------------------------------------------------------------

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def installing(installed=50_000, targeted=50_000, unreachable=0, incompatible=0, min_share=0.9):
    return InstallProgress(
        version="v2.1",
        targeted=targeted,
        installed=installed,
        unreachable=unreachable,
        incompatible=incompatible,
        min_share=min_share,
    )


def baking(minutes=5, started_seconds_ago=None):
    started = None if started_seconds_ago is None else NOW - dt.timedelta(seconds=started_seconds_ago)
    return BakeClock(ring="ring_5", minutes=minutes, started_at=started, now=NOW)


def test_it_waits_for_the_installed_share_with_the_counts():
    decision = evaluate(health(), CONFIG, Signals(install=installing(installed=4_210)))

    assert decision.action == Action.WAIT
    assert decision.reason == "Installing: 4,210 of 50,000 devices run v2.1; 90% needed."
    assert decision.evaluation["overall"] == "WAIT"
    assert decision.evaluation["install"] == {
        "targeted": 50_000,
        "installed": 4_210,
        "unreachable": 0,
        "incompatible": 0,
        "share": 0.0842,
        "min_share": 0.9,
        "met": False,
    }


def test_it_counts_unreachable_and_incompatible_devices_apart():
    progress = installing(installed=44_900, targeted=50_000, unreachable=120, incompatible=30)
    decision = evaluate(health(), CONFIG, Signals(install=progress))

    # 44,900 of the 49,880 reachable is 90.02%: the unreachable are out of the denominator.
    assert progress.share == pytest.approx(44_900 / 49_880)
    assert decision.action == Action.PROMOTE
    short = installing(installed=40_000, targeted=50_000, unreachable=120, incompatible=30)
    assert evaluate(health(), CONFIG, Signals(install=short)).reason == (
        "Installing: 40,000 of 50,000 devices run v2.1; 90% needed; "
        "120 unreachable and 30 incompatible not counted."
    )


def test_a_stage_with_nothing_reachable_to_install_on_does_not_wait_for_it():
    progress = installing(installed=0, targeted=10, unreachable=10)
    assert progress.share is None
    assert progress.met


def test_failing_gates_come_before_the_install_share_and_critical_ones_before_all():
    signals = Signals(install=installing(installed=10), bake=baking(started_seconds_ago=None))
    assert evaluate(health(crash_free=0.985), CONFIG, signals).action == Action.PAUSE
    assert evaluate(health(crash_free=0.90), CONFIG, signals).action == Action.ROLLBACK


def test_the_install_share_comes_before_too_little_data_and_too_little_data_before_the_bake():
    bake = baking(started_seconds_ago=0)
    assert evaluate(health(devices=3), CONFIG, Signals(install=installing(installed=1))).reason.startswith(
        "Installing:"
    )
    assert evaluate(health(devices=3), CONFIG, Signals(install=installing(), bake=bake)).reason.startswith(
        "Too little data"
    )


def test_it_waits_for_the_bake_with_the_time_left():
    decision = evaluate(health(), CONFIG, Signals(install=installing(), bake=baking(started_seconds_ago=258)))

    assert decision.action == Action.WAIT
    assert decision.reason == "Baking: 42 s left of 5 min in ring_5."
    assert decision.evaluation["bake"] == {
        "started_at": "2026-03-01T11:55:42+00:00",
        "minutes": 5,
        "remaining_seconds": 42,
    }


def test_a_bake_that_has_not_started_is_still_all_ahead_and_one_that_is_over_promotes():
    not_started = evaluate(health(), CONFIG, Signals(install=installing(), bake=baking(minutes=240)))
    over = evaluate(health(), CONFIG, Signals(install=installing(), bake=baking(started_seconds_ago=301)))
    no_bake = evaluate(health(), CONFIG, Signals(install=installing(), bake=baking(minutes=0)))

    assert not_started.reason == "Baking: 4 h left of 4 h in ring_5."
    assert (over.action, no_bake.action) == (Action.PROMOTE, Action.PROMOTE)
    assert over.evaluation["bake"]["remaining_seconds"] == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (42, "42 s"), (41.2, "42 s"), (60, "1 min"), (250, "4 min 10 s"), (5400, "1 h 30 min")],
)
def test_it_shows_durations_as_people_read_them(seconds, text):
    assert human_duration(seconds) == text


@pytest.mark.parametrize("value", [0, -1, 10**9, 1.5, "60"])
def test_it_refuses_a_bad_unreachable_after_minutes(value):
    with pytest.raises(ValueError, match="unreachable_after_minutes"):
        GateConfig.from_dict({"unreachable_after_minutes": value})


def test_it_names_only_what_the_sample_lacks():
    ring = RingHealth(ring="pilot", total_devices=60, checks=150, window_minutes=5)

    assert evaluate(ring, CONFIG).reason == (
        "Too little data: 150 of the 200 checks needed reported in the last 5 minutes."
    )
