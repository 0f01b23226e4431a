"""The autopilot with real moving parts: a Celery worker and beat on Redis, and racing workers."""

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from rollouts import autopilot
from rollouts.choices import RolloutStatus
from rollouts.models import Rollout
from saferoll.core.models import AuditEvent, FleetState
from tests.autopilot.conftest import report
from tests.conftest import autopilot_on_redis

# Long enough that scheduling delays on a loaded 2-core machine stay small against two periods.
PERIOD_SECONDS = 5.0


def wait_for(predicate, *, timeout: float, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@pytest.fixture
def redis_autopilot(tmp_path, own_redis_database):
    """A real worker and beat on Redis (this test process's own queues, see tests/conftest.py),
    with the autopilot's round every PERIOD_SECONDS."""
    if not own_redis_database.startswith("redis://"):
        pytest.skip("REDIS_URL is not set: the worker test needs Redis")
    with autopilot_on_redis(PERIOD_SECONDS, tmp_path):
        yield


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_rolls_back_within_two_periods_of_critical_data(
    make_rollout, redis_autopilot, settings
):
    settings.SAFEROLL_AUTOPILOT_PERIOD_SECONDS = PERIOD_SECONDS
    rollout = make_rollout()
    assert wait_for(lambda: FleetState.objects.filter(autopilot_last_run__isnull=False).exists(), timeout=15)

    report(rollout, "pilot", crash_free=0.80, at=timezone.now())
    rolled_back = wait_for(
        lambda: Rollout.objects.filter(pk=rollout.pk, status=RolloutStatus.ROLLED_BACK).exists(),
        timeout=2 * PERIOD_SECONDS,
    )

    assert rolled_back, "no AUTO_ROLLBACK within two evaluation periods"
    event = AuditEvent.objects.get(rollout=rollout, action="AUTO_ROLLBACK")
    assert event.actor_name == "saferoll"
    assert event.evaluation["overall"] == "FAIL"


def judge_concurrently(rollout_id: int, now, workers: int = 2) -> list:
    """Run the autopilot's judgement of one rollout on several threads released at the same instant,
    each with its own database connection, as two workers would."""
    barrier = threading.Barrier(workers)
    results = []

    def judge():
        try:
            barrier.wait()
            results.append(autopilot.autopilot_evaluate(rollout_id=rollout_id, now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=judge) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_workers_judging_the_same_rollout_at_once_make_one_transition(make_rollout):
    for attempt in range(3):
        rollout = make_rollout()
        now = timezone.now()
        report(rollout, "pilot", crash_free=0.80, at=now)

        results = judge_concurrently(rollout.pk, now)

        rollout.refresh_from_db()
        assert rollout.status == RolloutStatus.ROLLED_BACK, f"attempt {attempt}"
        assert sum(result is not None for result in results) == 1
        assert AuditEvent.objects.filter(rollout=rollout, action="AUTO_ROLLBACK").count() == 1
        assert AuditEvent.objects.filter(rollout=rollout, action__contains="ROLLBACK").count() == 1
