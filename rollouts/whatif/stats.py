"""Draws and summaries the fleet model needs, on the standard library's random generator only:
binomial counts of any size in constant time, and the median of a mixture of normal components."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from statistics import NormalDist

_STANDARD = NormalDist()
# Below this expected count a Poisson draw by inversion is exact enough and cheap; above it the
# normal approximation of the binomial is (a boot failure rate of 0.1 % over millions of checks).
_POISSON_UP_TO = 30.0
# The median of n draws from a normal spreads √(π/2) times as much as their mean.
MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2)


def binomial(rng: random.Random, trials: int, p: float) -> int:
    """A Binomial(trials, p) count in constant time whatever the number of trials."""
    if trials <= 0 or p <= 0:
        return 0
    if p >= 1:
        return trials
    mean = trials * p
    if mean <= _POISSON_UP_TO:
        return min(trials, _poisson(rng, mean))
    spread = math.sqrt(mean * (1 - p))
    return min(trials, max(0, round(rng.gauss(mean, spread))))


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's inversion: one uniform per unit of the count, fine for a mean up to a few dozen."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def mixture_median(components: Sequence[tuple[float, float, float]]) -> float:
    """Median of a mixture of (weight, mean, sd) normals, weights summing to 1: the quantile of the
    component that holds the middle, as if the components did not overlap. They hardly do where it
    matters (healthy 50 ms against 1–2 s during a network fault); where they do, their means are close."""
    if len(components) == 1:
        return components[0][1]
    ordered = sorted(components, key=lambda component: component[1])
    below = 0.0
    for weight, mean, sd in ordered:
        if weight <= 0:
            continue
        if below + weight >= 0.5:
            share = min(max((0.5 - below) / weight, 1e-6), 1 - 1e-6)
            return mean + sd * _STANDARD.inv_cdf(share)
        below += weight
    return ordered[-1][1]


def weighted_median(pairs: Iterable[tuple[float, float]]) -> float:
    """Median of values by weight, from (value, weight) pairs: a window's median from its buckets'."""
    ordered = sorted(pairs)
    total = sum(weight for _, weight in ordered)
    running = 0.0
    for value, weight in ordered:
        running += weight
        if running >= total / 2:
            return value
    return ordered[-1][0] if ordered else 0.0


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (0.95: the value 95 % of the values are at or below); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(share * len(ordered)), 1)
    return ordered[rank - 1]


def lognormal_cdf(seconds: float, median: float, sigma: float) -> float:
    """Share of devices done by `seconds` when the times are lognormal around `median`."""
    if seconds <= 0:
        return 0.0
    return _STANDARD.cdf(math.log(seconds / median) / sigma)


def lognormal_quantile(share: float, median: float, sigma: float) -> float:
    return median * math.exp(sigma * _STANDARD.inv_cdf(min(max(share, 1e-9), 1 - 1e-9)))
