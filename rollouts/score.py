"""A ring's health score (003): one number from 0 to 100 that sums up how its gates stand.

The score explains; it never decides. The gates alone say PROMOTE, PAUSE, ROLLBACK or WAIT, and a
ring can score 90 and still roll back (one critical gate among many passing ones). Pure Python with
no Django imports, like the gate engine it reads.

Each judged gate gets a part between 0 and 1:
- 1 when it passes, however close to its goal (headroom earns nothing: a score that moved with
  noise inside the goal would suggest trouble the gates do not see);
- for a failing gate with a critical threshold, 0.5 just past its goal falling linearly to 0 at the
  critical threshold and beyond: a failing gate counts at most half as much as a passing one, so a
  ring with a failing gate never scores 100;
- 0.5 for a failing gate without a critical threshold (open Sev1 incidents, deployment failures,
  the optional KPIs): failing, but not measured against a line of disaster.

The score is 100 × Σ weight × part / Σ weight over the judged gates, rounded half up. Gates left
unjudged for too little data are left out, and so is a score that would rest only on the gates that
need no sample (Sev1 incidents, deployment failures, reporting rate): without device health to weigh
it would read a ring nobody has heard from as healthy. Then the score is None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# How much each gate weighs by default; a plan's `score_weights` replaces any of them. The gates of
# 000 §6.2 that roll back (crash-free rate and boot success) weigh most, latency and silence next.
# Any other gate, custom KPIs (`kpi:<name>`) included, weighs DEFAULT_WEIGHT.
DEFAULT_WEIGHTS: dict[str, float] = {
    "crash_free_rate": 3.0,
    "boot_success_rate": 3.0,
    "median_latency_ms": 2.0,
    "reporting_rate": 2.0,
}
DEFAULT_WEIGHT = 1.0
# What a failing gate is worth at its goal, and for the whole of its failure when it has no
# critical threshold.
FAILING_PART = 0.5


class Gate(Protocol):
    """What the score reads of a rollouts.gates.Gate (named here, not imported: the gate engine
    imports this module)."""

    @property
    def name(self) -> str: ...
    @property
    def value(self) -> float | int | None: ...
    @property
    def threshold(self) -> float | int: ...
    @property
    def operator(self) -> str: ...
    @property
    def passed(self) -> bool: ...
    @property
    def critical_threshold(self) -> float | None: ...
    @property
    def needs_sample(self) -> bool: ...


@dataclass(frozen=True)
class Score:
    """The score (None when there is nothing to score), the weight of each gate it weighed and each
    gate's part between 0 and 1."""

    value: int | None
    weights: dict[str, float] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "weights": dict(self.weights),
            "parts": {name: round(part, 3) for name, part in self.parts.items()},
        }


def gate_weight(name: str, weights: Mapping[str, float] | None = None) -> float:
    """The weight of gate `name`: the plan's, else the default one."""
    if weights and name in weights:
        return float(weights[name])
    return DEFAULT_WEIGHTS.get(name, DEFAULT_WEIGHT)


def gate_part(gate: Gate) -> float:
    """How well one gate stands, from 1 (passing) down to 0 (at or past its critical threshold)."""
    if gate.passed:
        return 1.0
    critical = gate.critical_threshold
    if critical is None or gate.value is None:
        return FAILING_PART
    # The distance from the critical line, as a share of the span between it and the goal.
    span = gate.threshold - critical if gate.operator == ">=" else critical - gate.threshold
    left = gate.value - critical if gate.operator == ">=" else critical - gate.value
    if span <= 0 or left <= 0:
        return 0.0
    return FAILING_PART * min(left / span, 1.0)


def health_score(gates: Iterable[Gate], weights: Mapping[str, float] | None = None) -> Score:
    """Score the judged `gates` with the plan's `weights` (a gate not named there weighs its
    default). A gate of weight 0 is shown with its part but counts for nothing."""
    judged = [gate for gate in gates if gate.value is not None]
    if not any(gate.needs_sample for gate in judged):
        return Score(value=None)
    used = {gate.name: gate_weight(gate.name, weights) for gate in judged}
    parts = {gate.name: gate_part(gate) for gate in judged}
    total = sum(used.values())
    if total <= 0:
        return Score(value=None, weights=used, parts=parts)
    # Halves round up, as people round (Python's round() would make 77.5 into 78 but 76.5 into 76).
    value = math.floor(100 * sum(used[name] * parts[name] for name in parts) / total + 0.5)
    if value == 100 and any(used[name] > 0 and part < 1 for name, part in parts.items()):
        # Rounding must not make a ring with a failing gate read as perfect.
        value = 99
    return Score(value=value, weights=used, parts=parts)
