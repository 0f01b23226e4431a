"""The Celery app and SafeRoll's one beat schedule.

With REDIS_URL set the broker is Redis and the autopilot runs as `celery -A saferoll worker -B`
(any number of workers, exactly one beat). Without it the broker is in memory and
`manage.py serve` runs a worker and the beat inside the web process (saferoll/embedded.py).
Every scheduled task is safe to run twice or concurrently: each one locks or conditionally
updates the rows it changes.
"""

import os

from celery import Celery
from django.conf import settings

from saferoll.core import metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saferoll.settings")

app = Celery("saferoll")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Task durations, and the worker's own metrics endpoint when SAFEROLL_WORKER_METRICS_PORT is set.
metrics.instrument_celery()

app.conf.beat_schedule = {
    # The autopilot: judge every active rollout and act on the decision (000 §9.4: every 10–30 s).
    "evaluate-active-rollouts": {
        "task": "rollouts.tasks.evaluate_active_rollouts",
        "schedule": settings.SAFEROLL_AUTOPILOT_PERIOD_SECONDS,
    },
    # Waves: the next devices of a stage told to install, at the plan's rate per minute. Beside the
    # autopilot's round, so a wave is never more than a round late.
    "release-waves": {
        "task": "rollouts.tasks.release_waves",
        "schedule": settings.SAFEROLL_AUTOPILOT_PERIOD_SECONDS,
    },
    # Deployment steps that hang past their timeout fail; slow rollbacks flag their device (002 D11–12).
    "sweep-deployments": {
        "task": "rollouts.tasks.sweep_deployments",
        "schedule": 30.0,
    },
    # Devices silent past the threshold go offline (the reporting-rate gate already counts them).
    "mark-silent-devices-offline": {
        "task": "devices.tasks.mark_silent_devices_offline",
        "schedule": 30.0,
    },
    # More than a fifth of the fleet unhealthy raises the emergency stop (001 "fleet-wide failure").
    "check-fleet-health": {
        "task": "rollouts.tasks.check_fleet_health",
        "schedule": 30.0,
    },
    # Retention of raw health checks (telemetry.services.health_checks_prune): on PostgreSQL the
    # partitions ahead are made and those past the retention dropped; on SQLite old checks are
    # deleted in batches. Hourly: four partitions are made ahead, so missed runs cost nothing.
    "prune-health-checks": {
        "task": "telemetry.tasks.prune_health_checks",
        "schedule": 3600.0,
    },
}
