"""What would this plan do? A replay of many simulated rollouts of a plan, judged by the real gate
engine and autopilot policy on a simulated clock, over a statistical model of the fleet: no HTTP,
no database. `manage.py whatif` and the portal's plan page call `replay`.

Each run draws its release (good, or bad in one of several ways; scenarios.RELEASE_MIX) and, on a
share of runs, an outside event, from its own `random.Random` seeded by the seed and the run's
number: a run comes out the same whichever process plays it, and the same seed gives the same table.
"""

from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from rollouts.gates import GateConfig
from rollouts.whatif.fleet import FleetModel
from rollouts.whatif.report import Row, figures, rows, table_text
from rollouts.whatif.run import Run, RunResult, WhatIfPlan
from rollouts.whatif.scenarios import draw_event, draw_release

__all__ = ["FleetModel", "Report", "RunResult", "WhatIfPlan", "play_run", "replay"]


@dataclass(frozen=True)
class Report:
    plan: str
    runs: int
    seed: int
    fleet: int
    outside_events: float
    results: list[RunResult]

    def rows(self) -> list[Row]:
        return rows(self.results)

    def table(self) -> str:
        head = (
            f"What if: plan {self.plan}, {self.runs} runs, {self.fleet:,} devices, "
            f"outside events on {self.outside_events:.0%} of runs, seed {self.seed}"
        )
        return f"{head}\n{table_text(self.rows())}"

    def figures(self) -> dict[str, dict[str, Any]]:
        return figures(self.results)


def run_rng(seed: int, index: int) -> random.Random:
    """The run's own generator: a string seed is hashed the same in every process and Python run."""
    return random.Random(f"whatif:{seed}:{index}")


def play_run(
    plan: WhatIfPlan, fleet: FleetModel, *, seed: int, index: int, outside_events: float
) -> RunResult:
    rng = run_rng(seed, index)
    config = GateConfig.from_dict(plan.gate_config)
    release = draw_release(rng)
    event = None
    if rng.random() < outside_events:
        event = draw_event(rng, fleet.devices, plan.expected_seconds())
    return Run(plan, fleet, config, release, event, rng).play(index)


def _play_many(plan: WhatIfPlan, fleet: FleetModel, seed: int, outside_events: float, indexes: range) -> list:
    return [play_run(plan, fleet, seed=seed, index=i, outside_events=outside_events) for i in indexes]


def replay(
    plan: WhatIfPlan,
    *,
    runs: int,
    seed: int,
    fleet: FleetModel,
    outside_events: float = 0.3,
    workers: int = 1,
) -> Report:
    """Play `runs` rollouts of `plan` (in `workers` processes) and sum them up.

    Raises ValueError for a plan whose gate settings do not parse, or arguments out of range."""
    if runs < 1:
        raise ValueError("runs must be at least 1.")
    if not 0.0 <= outside_events <= 1.0:
        raise ValueError("The outside-events share must be between 0 and 1.")
    if fleet.devices < 1:
        raise ValueError("The fleet needs at least one device.")
    if not plan.stages:
        raise ValueError(f"Plan {plan.name} has no stages.")
    GateConfig.from_dict(plan.gate_config)
    if workers <= 1 or runs == 1:
        results = _play_many(plan, fleet, seed, outside_events, range(runs))
    else:
        # Interleaved slices: runs differ in length (a bad release stops early), so each process
        # gets a fair share of the long ones.
        slices = [range(start, runs, workers) for start in range(workers)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = pool.map(
                _play_many, *zip(*[(plan, fleet, seed, outside_events, s) for s in slices], strict=True)
            )
            results = sorted((result for part in parts for result in part), key=lambda result: result.index)
    return Report(plan.name, runs, seed, fleet.devices, outside_events, results)
