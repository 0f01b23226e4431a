"""The baseline comparison: outside events are not blamed on the release, real regressions are
caught, and sparse data proves nothing by itself."""

import math
from dataclasses import replace

import pytest

from rollouts.baseline import binomial_upper_tail, normal_upper_tail
from rollouts.gates import Action, Baseline, GateConfig, Signals, evaluate
from telemetry.health import DeviceSpread, RingHealth

CONFIG = GateConfig()


def window(
    devices=2000,
    *,
    crash_rate=0.003,
    crash_sd=0.002,
    boot=0.999,
    latency=50.0,
    latency_sd=8.0,
    expected=None,
    checks_per_device=60,
) -> RingHealth:
    return RingHealth(
        ring="pilot",
        total_devices=devices,
        crash_free_rate=1 - crash_rate,
        boot_success_rate=boot,
        median_latency_ms=latency,
        expected_devices=expected if expected is not None else devices,
        checks=devices * checks_per_device,
        spread=DeviceSpread(
            devices=devices,
            crash_rate_mean=crash_rate,
            crash_rate_var=crash_sd**2,
            latency_mean=latency,
            latency_var=latency_sd**2,
        ),
    )


def judge(ring: RingHealth, baseline: RingHealth | None, config: GateConfig = CONFIG, *, recent=None):
    """The ring against `baseline` over the window; compared over the last minute, where the ring
    and the baseline read the same unless `recent` gives that minute's (ring, baseline)."""
    if baseline is None:
        return evaluate(ring, config, Signals())
    ring_recent, baseline_recent = recent or (ring, baseline)
    signals = Signals(baseline=Baseline(window=baseline, recent=baseline_recent, ring_recent=ring_recent))
    return evaluate(ring, config, signals)


def test_a_fleet_wide_latency_spike_is_an_outside_event_not_the_release():
    decision = judge(window(latency=800, latency_sd=120), window(20_000, latency=790, latency_sd=120))

    assert decision.action == Action.WAIT
    assert decision.reason.startswith("Outside event, not the release: median latency 800 ms")
    assert "790 ms on the previous release over the same window" in decision.reason
    gate = decision.evaluation["gates"]["median_latency_ms"]
    assert gate["passed"] is False
    assert gate["excused"] is True
    assert gate["baseline"] == 790
    assert decision.evaluation["baseline"]["median_latency_ms"] == 790


def test_a_site_outage_that_silences_both_versions_does_not_roll_back():
    ring = window(400, expected=1000)
    baseline = window(4_200, expected=10_000)

    decision = judge(ring, baseline)

    assert decision.action == Action.WAIT
    assert decision.evaluation["gates"]["reporting_rate"]["excused"] is True
    assert decision.evaluation["gates"]["silent_share_vs_baseline"]["passed"] is True


def test_without_a_baseline_the_same_outage_rolls_back():
    assert judge(window(400, expected=1000), None).action == Action.ROLLBACK


def test_a_release_much_worse_than_the_baseline_during_an_outage_is_still_blamed():
    decision = judge(window(latency=1700, latency_sd=200), window(20_000, latency=800, latency_sd=150))

    assert decision.action == Action.PAUSE
    assert "Mean latency 1700 ms against 800 ms on the previous release" in decision.reason
    assert decision.evaluation["gates"]["median_latency_ms"].get("excused") is None


def test_a_small_real_regression_above_the_fixed_gates_is_caught():
    """Crash rate doubled, 0.3 % → 0.6 %: still above the 99 % gate."""
    decision = judge(window(crash_rate=0.006), window(20_000, crash_rate=0.003))

    assert decision.action == Action.PAUSE
    assert "Crash rate 0.60% against 0.30% on the previous release (2.0×, p < 0.001; at most 1.3×)" in (
        decision.reason
    )
    gate = decision.evaluation["gates"]["crash_rate_vs_baseline"]
    assert gate["passed"] is False
    assert gate["ratio"] == 2.0
    assert gate["worse"] is True


def test_a_healthy_ring_passes_its_comparisons():
    decision = judge(window(), window(20_000))

    assert decision.action == Action.PROMOTE
    names = {"crash_rate_vs_baseline", "boot_failure_rate_vs_baseline", "latency_vs_baseline"}
    assert names <= set(decision.evaluation["gates"])


def test_a_few_failed_boots_on_a_small_ring_prove_nothing_against_the_baseline():
    """3 failed boots in 300 checks against 10 in 10,000: ten times the rate, p ≈ 0.005."""
    ring = window(50, boot=1 - 3 / 300, checks_per_device=6)
    baseline = window(1000, boot=1 - 10 / 10_000, checks_per_device=10)

    gate = judge(ring, baseline).evaluation["gates"]["boot_failure_rate_vs_baseline"]

    assert gate["ratio"] == 10.0
    assert 0.001 < gate["p_value"] < 0.01
    assert gate["passed"] is True


def test_a_baseline_too_small_excuses_nothing_and_compares_nothing():
    decision = judge(window(latency=800), window(20, latency=800))

    assert decision.action == Action.PAUSE
    assert not any(name.endswith("_vs_baseline") for name in decision.evaluation["gates"])


def test_a_plan_can_switch_the_comparison_off():
    config = GateConfig(baseline_comparison=False)

    decision = judge(window(crash_rate=0.006, latency=800), window(20_000, latency=800), config)

    assert decision.action == Action.PAUSE
    assert "crash_rate_vs_baseline" not in decision.evaluation["gates"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"baseline_alpha": 1.5}, "a share between 0 and 1"),
        ({"baseline_alpha": 0}, "baseline_alpha must be between 0 and 0.5"),
        ({"baseline_crash_ratio_max": 0.5}, r"baseline_crash_ratio_max must be at least 1"),
        ({"baseline_min_sample": 1}, "baseline_min_sample must be at least 2"),
        ({"min_checks": 0}, "min_checks must be at least 1"),
        ({"baseline_comparison": "yes"}, "baseline_comparison must be true or false"),
    ],
)
def test_it_refuses_bad_baseline_settings(data, message):
    with pytest.raises(ValueError, match=message):
        GateConfig.from_dict(data)


def test_the_binomial_tail_is_exact_for_few_events_and_close_for_many():
    # P(X >= 2), X ~ Bin(3, 0.5) = 4/8.
    assert binomial_upper_tail(2, 3, 0.5) == pytest.approx(0.5)
    assert binomial_upper_tail(0, 10, 0.3) == 1.0
    assert binomial_upper_tail(11, 10, 0.3) == 0.0
    exact = sum(math.comb(400, k) * 0.1**k * 0.9 ** (400 - k) for k in range(50, 401))
    assert binomial_upper_tail(50, 400, 0.1) == pytest.approx(exact, rel=1e-9)
    # Past the exact range, the normal approximation with continuity correction.
    assert binomial_upper_tail(550, 1000, 0.5) == pytest.approx(0.00087, rel=0.1)


def test_the_normal_tail():
    assert normal_upper_tail(0) == 0.5
    assert normal_upper_tail(1.96) == pytest.approx(0.025, rel=0.01)


LOOPS = {"metric": "crash_loops", "operator": "<=", "threshold": 2, "baseline": True}


def with_loops(health: RingHealth, loops: float) -> RingHealth:
    return replace(health, metrics={"crash_loops": loops})


def test_a_custom_kpi_much_worse_than_the_previous_releases_fails_when_the_plan_compares_it():
    config = GateConfig.from_dict({"custom_gates": [LOOPS]})

    decision = judge(with_loops(window(), 1.5), with_loops(window(20_000), 0.5), config)

    assert decision.action == Action.PAUSE
    assert (
        "Crash loops 1.5 against 0.5 on the previous release: 3.00× as bad, beyond the 1.5× allowed."
        in decision.reason
    )
    assert decision.evaluation["gates"]["kpi:crash_loops"]["baseline"] == 0.5


def test_a_custom_kpi_failing_as_much_on_the_previous_release_is_an_outside_event():
    config = GateConfig.from_dict({"custom_gates": [{**LOOPS, "baseline": False}]})

    decision = judge(with_loops(window(), 4.0), with_loops(window(20_000), 3.8), config)

    assert decision.action == Action.WAIT
    assert decision.evaluation["gates"]["kpi:crash_loops"]["excused"] is True


def test_the_comparison_reads_the_last_minute_of_both_sides():
    """A spike that began a minute ago: the ring, still installing, has most of its checks in it;
    the baseline's window does not fail yet, its last minute does, as much as the ring's."""
    ring = window(latency=700, latency_sd=100)
    baseline_window = window(20_000, latency=300, latency_sd=100)
    recent = (window(latency=720, latency_sd=100), window(20_000, latency=710, latency_sd=100))

    decision = judge(ring, baseline_window, recent=recent)

    assert decision.action == Action.WAIT
    assert decision.evaluation["gates"]["median_latency_ms"]["excused"] is True
    assert decision.evaluation["baseline"]["recent"]["median_latency_ms"] == 710
