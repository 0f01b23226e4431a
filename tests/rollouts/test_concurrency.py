"""Two actors at once on one rollout (SPEC §3): a person's promote against SafeRoll's rollback,
on real concurrent database sessions. Exactly one transition happens, the rollout ends in one
consistent state, and both attempts are in the audit log."""

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from django.db import connection, transaction

from rollouts.models import DeviceDeployment, Rollout
from rollouts.services import lifecycle
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AuditEvent, FleetState
from tests.factories import ReleaseFactory
from tests.rollouts.conftest import FLEET
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


def race(
    rollout: Rollout, attempts: dict[str, Callable[[Rollout], Rollout]], *, also: Sequence[Rollout] = ()
) -> dict[str, str]:
    """Run each attempt in its own thread and database session, on the rollout as each saw it
    before the race, and make them queue on the rollout's row lock (and those of `also`, for
    attempts on other rollouts): this test holds the locks until every attempt is blocked on one,
    then lets go. Returns, per attempt, "done" or the refusal."""
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
        list(Rollout.objects.select_for_update().filter(pk__in=[rollout.pk, *(other.pk for other in also)]))
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_two_rollouts_starting_together_never_both_claim_a_device(plan, release, fleet, manager, round_):
    first = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    second = lifecycle.rollout_create(release=ReleaseFactory(version="v2.2"), plan=plan, actor=manager)
    # Stored beforehand: two starts creating it at once would queue on its key before deploying.
    FleetState.load()

    outcomes = race(
        first,
        {
            "first": lambda seen: lifecycle.rollout_start(rollout=seen, actor=manager),
            "second": lambda _: lifecycle.rollout_start(rollout=second, actor=manager),
        },
        also=[second],
    )

    assert set(outcomes.values()) == {"done"}, outcomes
    claims = Counter(
        DeviceDeployment.objects.filter(rollout__in=[first, second]).values_list("device_id", flat=True)
    )
    assert len(claims) == FLEET["pilot"]
    assert set(claims.values()) == {1}
    starts = AuditEvent.objects.filter(action="START", rollout__in=[first, second])
    # Whichever deployed second found every pilot device busy in the other.
    assert sorted(event.changes["deployments"]["skipped_busy"] for event in starts) == [0, FLEET["pilot"]]
