"""The autopilot's reaction to a judgement, as a pure function: the autopilot applies it to a
stored rollout, the what-if replay to a simulated one, so both follow exactly the same rule."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rollouts.gates import Action, GateConfig


class Step(StrEnum):
    ROLLBACK = "rollback"
    PAUSE = "pause"
    PROMOTE = "promote"
    # Nothing changes state; the failing streak may still move.
    NOTHING = "nothing"


@dataclass(frozen=True)
class Move:
    step: Step
    # Consecutive non-critical failures after this judgement.
    streak: int


def autopilot_move(action: Action, *, streak: int, config: GateConfig, may_advance: bool) -> Move:
    """ROLLBACK at once; PAUSE only after the plan's number of failing judgements in a row; PROMOTE
    resets the streak and advances when the stage may (`may_advance`: baked, and the plan's
    auto-advance or the last ring). WAIT (too little data) changes nothing and counts nothing."""
    if action == Action.ROLLBACK:
        return Move(Step.ROLLBACK, streak)
    if action == Action.PAUSE:
        streak += 1
        step = Step.PAUSE if streak >= config.consecutive_failures_to_pause else Step.NOTHING
        return Move(step, streak)
    if action == Action.PROMOTE:
        return Move(Step.PROMOTE if may_advance else Step.NOTHING, 0)
    return Move(Step.NOTHING, streak)
