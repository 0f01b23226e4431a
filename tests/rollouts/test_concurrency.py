"""Two actors at once on one rollout (SPEC §3): a person's promote against SafeRoll's rollback,
on real concurrent database sessions. Exactly one transition happens, the rollout ends in one
consistent state, and both attempts are in the audit log."""

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from rollouts.models import DeviceDeployment, Rollout
from rollouts.services import lifecycle
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AuditEvent
from tests.rollouts.helpers import report

# Long enough for two threads to reach a row lock on a loaded machine; the race itself never waits.
LOCK_QUEUE_DEADLINE_SECONDS = 20


def waiting_on_locks() -> int:
    """Sessions of this test database blocked on a lock right now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def race(rollout: Rollout, attempts: dict[str, Callable[[Rollout], Rollout]]) -> dict[str, str]:
    """Run each attempt in its own thread and database session, on the rollout as each saw it
    before the race, and make them queue on the rollout's row lock: this test holds the lock until
    every attempt is blocked on it, then lets go. Returns, per attempt, "done" or the refusal."""
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(len(attempts) + 1)

    def attempt(name: str, act: Callable[[Rollout], Rollout]) -> None:
        try:
            seen = Rollout.objects.get(pk=rollout.pk)  # what this actor decided on
            barrier.wait()
            act(seen)
            outcomes[name] = "done"
        except ServiceRefused as refused:
            outcomes[name] = refused.message
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=item) for item in attempts.items()]
    with transaction.atomic():
        Rollout.objects.select_for_update().get(pk=rollout.pk)
        for thread in threads:
            thread.start()
        barrier.wait()
        deadline = time.monotonic() + LOCK_QUEUE_DEADLINE_SECONDS
        while waiting_on_locks() < len(attempts):
            assert time.monotonic() < deadline, "the attempts never queued on the rollout's lock"
    for thread in threads:
        thread.join(timeout=LOCK_QUEUE_DEADLINE_SECONDS)
        assert not thread.is_alive()
    return outcomes


@pytest.fixture
def racing(started, manager) -> Rollout:
    """An active rollout whose pilot is healthy: promote and rollback are both allowed."""
    report(started, "pilot")
    return started


def actions_since_start(rollout: Rollout) -> list[str]:
    actions = list(
        AuditEvent.objects.filter(rollout=rollout)
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )
    return actions[actions.index("START") + 1 :]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(5))
def test_it_lets_exactly_one_of_a_promote_and_an_automatic_rollback_happen(racing, manager, round_):
    outcomes = race(
        racing,
        {
            "promote": lambda seen: lifecycle.rollout_promote(rollout=seen, actor=manager),
            "rollback": lambda seen: lifecycle.rollout_rollback(
                rollout=seen, actor=None, reason="Pilot is critical."
            ),
        },
    )

    assert sorted(outcomes.values()).count("done") == 1, outcomes
    final = Rollout.objects.get(pk=racing.pk)
    ring_5 = DeviceDeployment.objects.filter(rollout=racing, ring="ring_5")
    pilot_states = set(
        DeviceDeployment.objects.filter(rollout=racing, ring="pilot").values_list("state", flat=True)
    )
    actions = actions_since_start(racing)
    if outcomes["promote"] == "done":
        assert final.state == "ring_5"
        assert ring_5.count() == 12
        assert pilot_states == {"activated"}
        assert sorted(actions) == ["AUTO_ROLLBACK_REFUSED", "PROMOTE"]
        assert "went from pilot to ring_5" in outcomes["rollback"]
    else:
        assert final.state == "rolled_back"
        assert not ring_5.exists()
        assert pilot_states == {"rolling_back"}
        assert sorted(actions) == ["AUTO_ROLLBACK", "PROMOTE_REFUSED"]
        assert "it is rolled back" in outcomes["promote"]
    refused = AuditEvent.objects.get(rollout=racing, action__endswith="_REFUSED")
    assert refused.actor_name == ("saferoll" if outcomes["promote"] == "done" else manager.username)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_it_promotes_once_when_two_people_press_promote_together(racing, manager, round_):
    outcomes = race(
        racing,
        {
            "first": lambda seen: lifecycle.rollout_promote(rollout=seen, actor=manager),
            "second": lambda seen: lifecycle.rollout_promote(rollout=seen, actor=manager),
        },
    )

    assert sorted(outcomes.values()).count("done") == 1, outcomes
    assert Rollout.objects.get(pk=racing.pk).state == "ring_5"
    assert DeviceDeployment.objects.filter(rollout=racing, ring="ring_5").count() == 12
    assert sorted(actions_since_start(racing)) == ["PROMOTE", "PROMOTE_REFUSED"]
