"""The text a run ends with: what the fleet did, the plan it played under, and the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulator.scenarios.judge import ScenarioResult
from simulator.timeline import format_blast_radius, percent


def fleet_summary_text(summary: Mapping[str, Any]) -> str:
    """What the simulated fleet did, and how quickly SafeRoll answered it."""
    answers = summary.get("answer_ms") or {}
    failures = summary.get("failures") or {}
    text = (
        f"Fleet up {summary.get('uptime_s', 0):.0f} s: {summary.get('checks_delivered', 0)} health "
        f"checks stored, {summary.get('checks_rejected', 0)} rejected, {summary.get('checks_dropped', 0)} "
        f"dropped; SafeRoll answered in {answers.get('p50', 0)} ms (p50), {answers.get('p95', 0)} ms (p95)."
    )
    if failures:
        text += " Failed requests: " + ", ".join(f"{kind} ×{count}" for kind, count in failures.items()) + "."
    return text


def plan_text(plan: Mapping[str, Any]) -> str:
    """A plan in one line: its rings, bakes and gate settings."""
    stages = plan["stages"]
    gates = ", ".join(f"{key} {value}" for key, value in plan["gate_config"].items()) or "000 §6.2's gates"
    waves = plan.get("waves") or {}
    told = (
        f"{waves['per_minute']} devices told per minute (×{waves.get('growth', 1):g} each minute)"
        if waves
        else "every device of a ring told at once"
    )
    return (
        f"{' → '.join(stage['ring'] for stage in stages)}, {stages[0]['bake_minutes']}-minute bakes, "
        f"{told}, promoted by hand; {gates}"
    )


def format_result(result: ScenarioResult) -> list[str]:
    """The summary after the timeline: blast radius, the expected outcome check by check, verdict."""
    lines = [""]
    rollout = result.rollout
    minutes, seconds = divmod(int(result.duration), 60)
    if rollout is None:
        lines.append(f"Scenario {result.scenario}: no rollout was created ({minutes}:{seconds:02d}).")
    else:
        lines.append(
            f"Scenario {result.scenario}: rollout {rollout['rollout_id']} of {rollout['version']} "
            f"ended {rollout['state']} after {minutes}:{seconds:02d}."
        )
        by_ring = (rollout.get("deployments") or {}).get("by_ring") or {}
        blast = rollout.get("blast_radius") or {}
        lines.extend("  " + line for line in format_blast_radius(rollout["version"], blast, by_ring))
        fleet = int(blast.get("fleet", 0))
        others = fleet - result.simulated_devices
        if others > 0:
            lines.append(
                f"  ({others} of the server's {fleet} devices ({percent(others, fleet)}) are not simulated "
                "by this run: they never check in, so they never receive anything.)"
            )
    for check in result.outcome.checks:
        lines.append(f"  {'PASS' if check.passed else 'FAIL'}  {check.label}")
    if result.error:
        lines.append(f"  FAIL  {result.error}")
    lines.append(f"Result: {'PASS' if result.passed else 'FAIL'} ({result.scenario})")
    return lines
