"""Whether a scenario ended as it should, judged from its rollout's GET /api/rollouts/{id} answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.scenarios.presets import (
    COMPLETED,
    DISASTER,
    FAILURE_RING,
    HAPPY,
    MANUAL_PAUSE,
    PAUSE_ACTIONS,
    RINGS,
    ROLLBACK_ACTIONS,
    ROLLED_BACK,
    SCENARIOS,
)


@dataclass(frozen=True)
class Check:
    """One thing a scenario must end with, and whether it did."""

    label: str
    passed: bool


@dataclass(frozen=True)
class Outcome:
    scenario: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)


def _actions(detail: Mapping[str, Any]) -> list[str]:
    return [str(event.get("action")) for event in detail.get("events", [])]


def _first_index(actions: list[str], wanted: tuple[str, ...]) -> int | None:
    return next((index for index, action in enumerate(actions) if action in wanted), None)


def judge(
    scenario: str, detail: Mapping[str, Any] | None, *, seen_rings: frozenset[str] = frozenset()
) -> Outcome:
    """Whether a rollout (its GET /api/rollouts/{id} answer) ended as the scenario expects.

    `seen_rings` are the rings of the devices the runner saw running the release while it waited
    (GET /api/devices?version=…): a second witness, besides the rollout's deployments, that the
    bad release of the disaster stayed inside pilot and ring_5."""
    if detail is None:
        return Outcome(scenario, (Check("a rollout was created and started", False),))
    status = detail.get("status")
    actions = _actions(detail)
    no_rollback = Check("no rollback", not any(action in ROLLBACK_ACTIONS for action in actions))
    if scenario == HAPPY:
        return Outcome(
            scenario,
            (
                Check(f"completed (ended {status})", status == COMPLETED),
                no_rollback,
            ),
        )
    if scenario == MANUAL_PAUSE:
        paused_at = _first_index(actions, PAUSE_ACTIONS)
        resumed_after = paused_at is not None and "RESUME" in actions[paused_at + 1 :]
        return Outcome(
            scenario,
            (
                Check(f"completed (ended {status})", status == COMPLETED),
                Check("paused (PAUSE or AUTO_PAUSE) in the timeline", paused_at is not None),
                Check("resumed (RESUME) after the pause", resumed_after),
                no_rollback,
            ),
        )
    if scenario == DISASTER:
        return Outcome(scenario, _disaster_checks(detail, status, actions, seen_rings))
    raise ValueError(f"Unknown scenario {scenario!r}; the scenarios are {', '.join(SCENARIOS)}.")


def _disaster_checks(
    detail: Mapping[str, Any], status: Any, actions: list[str], seen_rings: frozenset[str]
) -> tuple[Check, ...]:
    allowed = set(RINGS[: RINGS.index(FAILURE_RING) + 1])
    by_ring = (detail.get("deployments") or {}).get("by_ring") or {}
    outside = {
        ring: counts
        for ring, counts in by_ring.items()
        if ring not in allowed and (counts.get("exposed") or counts.get("targeted"))
    }
    auto = [event for event in detail.get("events", []) if event.get("action") == "AUTO_ROLLBACK"]
    blast = detail.get("blast_radius") or {}
    inside = sum(int(by_ring.get(ring, {}).get("exposed", 0)) for ring in allowed)
    allowed_text = " and ".join(sorted(allowed, key=RINGS.index))
    return (
        Check(f"rolled back (ended {status})", status == ROLLED_BACK),
        Check(
            f"rolled back by SafeRoll (AUTO_ROLLBACK in {FAILURE_RING}), not by a person",
            bool(auto) and auto[0].get("from_ring") == FAILURE_RING and "ROLLBACK" not in actions,
        ),
        Check(
            f"the failure reached {FAILURE_RING} (devices exposed there)",
            bool(by_ring.get(FAILURE_RING, {}).get("exposed")),
        ),
        Check(
            f"no deployment outside {allowed_text}"
            + (f" (found: {', '.join(sorted(outside))})" if outside else ""),
            not outside and int(blast.get("exposed", 0)) == inside,
        ),
        Check(
            f"no device outside {allowed_text} seen running the release"
            + (f" (seen in: {', '.join(sorted(seen_rings - allowed))})" if seen_rings - allowed else ""),
            seen_rings <= allowed,
        ),
    )


@dataclass
class ScenarioResult:
    scenario: str
    outcome: Outcome
    rollout: dict[str, Any] | None
    lines: list[str]
    error: str | None = None
    fleet_summary: dict[str, Any] = field(default_factory=dict)
    simulated_devices: int = 0
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and self.outcome.passed
