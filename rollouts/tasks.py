"""Celery tasks of the autopilot: thin, idempotent, time-limited; the work is in rollouts.autopilot."""

from celery import shared_task

from rollouts import autopilot
from rollouts.services import deployments


@shared_task(time_limit=60, soft_time_limit=50)
def evaluate_active_rollouts() -> int:
    """Fan the round out, one task per active rollout, so many workers share a large round."""
    rollout_ids = autopilot.autopilot_round()
    for rollout_id in rollout_ids:
        evaluate_rollout.delay(rollout_id)
    return len(rollout_ids)


@shared_task(time_limit=60, soft_time_limit=50)
def release_waves() -> int:
    """The devices of rollouts with waves whose turn to install has come."""
    return deployments.deployments_release_waves()


@shared_task(time_limit=60, soft_time_limit=50)
def evaluate_rollout(rollout_id: int) -> str | None:
    evaluation = autopilot.autopilot_evaluate(rollout_id=rollout_id)
    return evaluation.action if evaluation else None


@shared_task(time_limit=120, soft_time_limit=100)
def sweep_deployments() -> dict[str, int]:
    return {
        "failed": autopilot.deployments_fail_stuck(),
        "flagged": autopilot.deployments_flag_slow_rollbacks(),
    }


@shared_task(time_limit=60, soft_time_limit=50)
def check_fleet_health() -> bool:
    return autopilot.fleet_check_health()
