"""The replay's figures: a row per scenario and overall, as a table and as benchmark figures
(`{"name": {"value", "unit"}}`, the shape of bench-results.json)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from rollouts.whatif.run import GUARD_RING, RunResult
from rollouts.whatif.scenarios import RELEASE_MIX
from rollouts.whatif.stats import percentile


@dataclass(frozen=True)
class Row:
    """One scenario's runs summed up. Shares are of the row's runs; detection and exposure of its
    bad releases (None when it has none, or none was halted)."""

    scenario: str
    runs: int
    halted: int
    stopped_before_guard: float | None
    median_detect_seconds: float | None
    p95_detect_seconds: float | None
    median_exposed_share: float | None
    false_halts: int
    unfinished: int

    @property
    def halted_share(self) -> float | None:
        return self.halted / self.runs if self.runs else None

    @property
    def false_halt_share(self) -> float | None:
        good = self.runs if self.scenario.startswith("good") else None
        return self.false_halts / good if good else None


def summarise(scenario: str, results: list[RunResult]) -> Row:
    bad = [result for result in results if result.bad]
    detections = [result.detect_seconds for result in bad if result.detect_seconds is not None]
    return Row(
        scenario=scenario,
        runs=len(results),
        halted=sum(result.halted for result in results),
        stopped_before_guard=sum(result.before_guard for result in bad) / len(bad) if bad else None,
        median_detect_seconds=statistics.median(detections) if detections else None,
        p95_detect_seconds=percentile(detections, 0.95),
        median_exposed_share=statistics.median(result.exposed_share for result in bad) if bad else None,
        false_halts=sum(result.halted for result in results if not result.bad),
        unfinished=sum(result.outcome == "unfinished" for result in results),
    )


def rows(results: list[RunResult]) -> list[Row]:
    """Each release kind (outside events or not), good releases by outside event, all bad, overall."""
    table = [
        summarise(kind.name, [r for r in results if r.release == kind.name])
        for kind in RELEASE_MIX
        if any(r.release == kind.name for r in results)
    ]
    for event in ("site_outage", "latency_spike"):
        hit = [r for r in results if not r.bad and r.event == event]
        if hit:
            table.append(summarise(f"good, {event.replace('_', ' ')}", hit))
    table.append(summarise("all bad", [r for r in results if r.bad]))
    table.append(summarise("overall", results))
    return table


HEADERS = (
    "scenario",
    "runs",
    "halted",
    f"stopped before {GUARD_RING}",
    "detect median",
    "detect p95",
    "exposed median",
    "false halts",
    "unfinished",
)


def row_cells(row: Row) -> list[str]:
    return [
        row.scenario,
        str(row.runs),
        str(row.halted),
        _share(row.stopped_before_guard),
        _seconds(row.median_detect_seconds),
        _seconds(row.p95_detect_seconds),
        _share(row.median_exposed_share, digits=2),
        str(row.false_halts) if row.scenario.startswith(("good", "overall")) else "–",
        str(row.unfinished),
    ]


def table_text(table: list[Row]) -> str:
    cells = [list(HEADERS)] + [row_cells(row) for row in table]
    widths = [max(len(line[column]) for line in cells) for column in range(len(HEADERS))]
    lines = []
    for number, line in enumerate(cells):
        first = line[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join([first, *rest]))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _share(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} s"


def figures(results: list[RunResult]) -> dict[str, dict[str, Any]]:
    """The benchmark figures: the safety headline over all runs, then each scenario's."""
    bad = summarise("bad", [r for r in results if r.bad])
    good = [r for r in results if not r.bad]
    data = {
        "safety.runs": _figure(len(results), "runs"),
        "safety.bad_stopped_before_ring_25": _figure(bad.stopped_before_guard, "share"),
        "safety.good_halted": _figure(sum(r.halted for r in good) / len(good) if good else None, "share"),
        "safety.median_detect_seconds": _figure(bad.median_detect_seconds, "s"),
        "safety.p95_detect_seconds": _figure(bad.p95_detect_seconds, "s"),
        "safety.median_exposed_share": _figure(bad.median_exposed_share, "share"),
        "safety.unfinished": _figure(sum(r.outcome == "unfinished" for r in results), "runs"),
    }
    for row in rows(results):
        if row.scenario in ("overall", "all bad"):
            continue
        key = "safety.scenario." + row.scenario.replace(", ", ".").replace(" ", "_")
        data[f"{key}.runs"] = _figure(row.runs, "runs")
        data[f"{key}.halted"] = _figure(row.halted_share, "share")
        if row.stopped_before_guard is not None:
            data[f"{key}.stopped_before_ring_25"] = _figure(row.stopped_before_guard, "share")
            data[f"{key}.median_detect_seconds"] = _figure(row.median_detect_seconds, "s")
            data[f"{key}.p95_detect_seconds"] = _figure(row.p95_detect_seconds, "s")
            data[f"{key}.median_exposed_share"] = _figure(row.median_exposed_share, "share")
    return data


def _figure(value: float | int | None, unit: str) -> dict[str, Any]:
    if isinstance(value, float):
        value = round(value, 4)
    return {"value": value, "unit": unit}
