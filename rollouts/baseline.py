"""The baseline comparison (SPEC §5): is the ring worse than the devices still on the previous
release, over the same window? Pure Python, like the gate engine that calls it.

Which test for which figure, and why:

- Boot failures and silent devices are rare events counted over checks (over devices for silence).
  The exact conditional test for two Poisson rates answers it: given the k events of both groups,
  under "same rate" the ring's share of them is Binomial(k, n_ring / (n_ring + n_baseline)). It is
  exact for the handful of failed boots a small ring shows, where a two-proportion z-test's normal
  approximation claims significance it does not have; past a few hundred events it is computed
  with the normal approximation, which is then accurate.
- Crash rate and latency are per-check figures, but the checks of one device are not independent
  (a device that crashes keeps crashing). The unit is the device: Welch's t-test on the per-device
  means (unequal variances and sizes), read from the normal tail, sound from the few dozen devices
  per side that `baseline_min_sample` asks for.

A comparison calls the ring worse only when it is worse both in practice (the ratio to the baseline
is above the plan's maximum) and statistically (one-sided p below `baseline_alpha`): a tiny
difference on a million devices is significant without mattering, and a doubled rate on ten
devices can be luck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from telemetry.health import DeviceSpread, RingHealth

# Past this many events the binomial tail is summed as its normal approximation.
EXACT_EVENTS_MAX = 400


@dataclass(frozen=True)
class Comparison:
    """One figure of the ring against the baseline's."""

    metric: str
    label: str
    ring: float
    baseline: float
    ratio_max: float
    p_value: float
    alpha: float
    # Shown as a percentage (rates) or in milliseconds.
    unit: str = "%"

    @property
    def ratio(self) -> float:
        if self.baseline > 0:
            return self.ring / self.baseline
        return 1.0 if self.ring <= 0 else math.inf

    @property
    def worse(self) -> bool:
        return self.ratio > self.ratio_max and self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "ring": round(self.ring, 6),
            "baseline": round(self.baseline, 6),
            "ratio": None if math.isinf(self.ratio) else round(self.ratio, 3),
            "ratio_max": self.ratio_max,
            "p_value": float(f"{self.p_value:.3g}"),
            "alpha": self.alpha,
            "worse": self.worse,
        }

    def describe(self) -> str:
        """ "crash rate 0.60% against 0.30% on the previous release (2.0×, p < 0.001; at most 1.5×)"."""
        ratio = "∞" if math.isinf(self.ratio) else f"{self.ratio:.1f}"
        p_text = "p < 0.001" if self.p_value < 0.001 else f"p = {self.p_value:.3f}"
        return (
            f"{self.label} {self._show(self.ring)} against {self._show(self.baseline)} on the previous "
            f"release ({ratio}×, {p_text}; at most {self.ratio_max:g}×)"
        )

    def _show(self, value: float) -> str:
        return f"{value:.0f} ms" if self.unit == "ms" else f"{value * 100:.2f}%"


def compare(ring: RingHealth, baseline: RingHealth, *, min_sample: int, alpha: float, ratios: dict) -> list:
    """The comparisons the two windows have enough devices for, on both sides. `ratios` maps
    "crash", "boot", "latency" and "silence" to the plan's maximum ratios."""
    if min(ring.total_devices, baseline.total_devices) < min_sample:
        return []
    comparisons = []
    if ring.checks and baseline.checks:
        comparisons.append(
            _counts(
                "boot_failure_rate",
                "Boot failure rate",
                (ring.boot_failures or 0, ring.checks),
                (baseline.boot_failures or 0, baseline.checks),
                ratios["boot"],
                alpha,
            )
        )
    if ring.spread and baseline.spread and min(ring.spread.devices, baseline.spread.devices) >= min_sample:
        for metric, label, figure, unit in (
            ("crash_rate", "Crash rate", "crash_rate", "%"),
            ("latency", "Mean latency", "latency", "ms"),
        ):
            comparisons.append(
                _means(
                    metric,
                    label,
                    _per_device(ring.spread, figure),
                    _per_device(baseline.spread, figure),
                    ratios["crash" if figure == "crash_rate" else "latency"],
                    alpha,
                    unit,
                )
            )
    if ring.expected_devices and baseline.expected_devices:
        comparisons.append(
            _counts(
                "silent_share",
                "Silent share",
                (_silent(ring), ring.expected_devices),
                (_silent(baseline), baseline.expected_devices),
                ratios["silence"],
                alpha,
            )
        )
    return comparisons


def _per_device(spread: DeviceSpread, figure: str) -> tuple[float, float, int]:
    """(mean, variance, devices) of a per-device figure."""
    return getattr(spread, f"{figure}_mean"), getattr(spread, f"{figure}_var"), spread.devices


def _silent(health: RingHealth) -> int:
    return max((health.expected_devices or 0) - health.total_devices, 0)


def _counts(metric, label, ring: tuple[int, int], baseline: tuple[int, int], ratio_max, alpha) -> Comparison:
    (k_ring, n_ring), (k_base, n_base) = ring, baseline
    events = k_ring + k_base
    p_value = binomial_upper_tail(k_ring, events, n_ring / (n_ring + n_base)) if events else 1.0
    return Comparison(metric, label, k_ring / n_ring, k_base / n_base, ratio_max, p_value, alpha)


def _means(metric, label, ring, baseline, ratio_max, alpha, unit="%") -> Comparison:
    (mean_ring, var_ring, n_ring), (mean_base, var_base, n_base) = ring, baseline
    error = math.sqrt(var_ring / n_ring + var_base / n_base)
    if error > 0:
        p_value = normal_upper_tail((mean_ring - mean_base) / error)
    else:
        p_value = 0.0 if mean_ring > mean_base else 1.0
    return Comparison(metric, label, mean_ring, mean_base, ratio_max, p_value, alpha, unit)


def normal_upper_tail(z: float) -> float:
    """P(Z ≥ z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def binomial_upper_tail(successes: int, trials: int, p: float) -> float:
    """P(X ≥ successes) for X ~ Binomial(trials, p)."""
    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    if trials > EXACT_EVENTS_MAX:
        mean, sd = trials * p, math.sqrt(trials * p * (1 - p))
        return normal_upper_tail((successes - 0.5 - mean) / sd)
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for k in range(successes, trials + 1):
        log_choose = math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
        total += math.exp(log_choose + k * log_p + (trials - k) * log_q)
    return min(total, 1.0)
