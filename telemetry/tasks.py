from celery import shared_task

from telemetry.services import health_checks_prune


@shared_task(time_limit=600, soft_time_limit=580)
def prune_health_checks() -> int:
    return health_checks_prune()
