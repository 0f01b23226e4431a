"""WS /ws and saferoll.portal.broadcast: who may listen, and what a page hears after a change commits."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import transaction
from django.test import Client

from rollouts.services import lifecycle
from saferoll.asgi import application
from saferoll.core import roles
from saferoll.core.alerts import alert_raise
from saferoll.core.models import AlertLevel
from saferoll.portal import broadcast
from tests.factories import EvaluationFactory
from tests.portal.conftest import IN_MEMORY_LAYER
from tests.portal.wsclient import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = IN_MEMORY_LAYER


def session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def run(scenario):
    """Run an async scenario; its database_sync_to_async calls come back to this thread."""
    return async_to_sync(scenario)()


async def connected(headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws", headers=headers)
    ok, _ = await communicator.connect()
    assert ok
    assert await communicator.receive_json_from() == {"type": "connected", "message": "Connected to SafeRoll"}
    return communicator


def test_it_closes_an_anonymous_socket_with_4401():
    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws", headers=[ORIGIN])
        ok, _ = await communicator.connect()
        assert ok, "accepted first, so that the browser sees the close code"
        assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401}

    run(scenario)


def test_it_closes_the_socket_of_an_account_without_a_role_with_4403(make_user):
    headers = session_headers(make_user(None))

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws", headers=headers)
        await communicator.connect()
        assert await communicator.receive_output() == {"type": "websocket.close", "code": 4403}

    run(scenario)


def test_it_refuses_a_socket_from_another_site(make_user):
    headers = [(b"origin", b"http://evil.example"), *session_headers(make_user(roles.VIEWER))[1:]]

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws", headers=headers)
        ok, _ = await communicator.connect()
        assert not ok

    run(scenario)


@pytest.mark.parametrize("role", [roles.VIEWER, roles.OPERATOR, roles.RELEASE_MANAGER, roles.ADMIN])
def test_every_role_connects_and_gets_the_connected_message(make_user, role):
    headers = session_headers(make_user(role))

    async def scenario():
        communicator = await connected(headers)
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from() == {"type": "pong"}
        await communicator.disconnect()

    run(scenario)


def test_a_rollout_change_reaches_the_socket_only_after_it_commits(make_user, rollout_factory):
    headers = session_headers(make_user(roles.VIEWER))
    rollout = rollout_factory("created")
    manager = make_user(roles.RELEASE_MANAGER, username="rm")

    def start_in_a_transaction(then_check):
        with transaction.atomic():
            lifecycle.rollout_start(rollout=rollout, actor=manager)
            broadcast.broadcast_rollout(rollout.pk)
            then_check()

    async def scenario():
        communicator = await connected(headers)

        # Nothing is sent while the transaction is open: listen from inside it, before commit.
        def nothing_yet():
            assert async_to_sync(communicator.receive_nothing)(0.3)

        await database_sync_to_async(start_in_a_transaction)(nothing_yet)
        message = await communicator.receive_json_from(timeout=2)
        assert message["type"] == "rollout_update"
        data = message["data"]
        assert data["rollout_id"] == rollout.rollout_id
        assert data["state"] == "pilot"
        assert data["current_ring"] == "pilot"
        assert data["version"] == rollout.release.version
        assert [event["action"] for event in data["events"]] == ["CREATED", "START"]
        assert data["events"][-1]["actor"] == "rm"
        assert set(data["blast_radius"]) == {"exposed", "targeted", "fleet", "spared"}
        # The audit event and the explicit call asked for the same rollout in one transaction: one message.
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    run(scenario)


def test_a_rolled_back_transaction_broadcasts_nothing(make_user, rollout_factory):
    headers = session_headers(make_user(roles.VIEWER))
    rollout = rollout_factory("created")

    def broadcast_then_roll_back():
        with pytest.raises(RuntimeError), transaction.atomic():
            broadcast.broadcast_rollout(rollout.pk)
            raise RuntimeError("the change failed")

    async def scenario():
        communicator = await connected(headers)
        await database_sync_to_async(broadcast_then_roll_back)()
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    run(scenario)


def test_a_created_rollout_is_announced_as_rollout_created(make_user, rollout_factory):
    headers = session_headers(make_user(roles.VIEWER))

    async def scenario():
        communicator = await connected(headers)
        rollout = await database_sync_to_async(rollout_factory)("created")
        await database_sync_to_async(broadcast.broadcast_rollout)(rollout.pk, created=True)
        message = await communicator.receive_json_from(timeout=2)
        assert message["type"] == "rollout_created"
        assert message["data"]["state"] == "created"
        await communicator.disconnect()

    run(scenario)


def test_an_alert_reaches_the_socket_with_its_level_kind_title_message_and_rollout(
    make_user, rollout_factory
):
    headers = session_headers(make_user(roles.OPERATOR))
    rollout = rollout_factory("pilot")

    def raise_alert():
        alert = alert_raise(
            level=AlertLevel.CRITICAL,
            kind="AUTO_ROLLBACK",
            title=f"SafeRoll rolled back {rollout.release.version}",
            message="Critical: crash-free rate 94.0% is below 95.0%.",
            rollout=rollout,
        )
        broadcast.broadcast_alert(alert)
        return alert

    async def scenario():
        communicator = await connected(headers)
        alert = await database_sync_to_async(raise_alert)()
        message = await communicator.receive_json_from(timeout=2)
        assert message == {
            "type": "alert",
            "data": {
                "id": alert.pk,
                "level": "critical",
                "kind": "AUTO_ROLLBACK",
                "title": f"SafeRoll rolled back {rollout.release.version}",
                "message": "Critical: crash-free rate 94.0% is below 95.0%.",
                "rollout_id": rollout.rollout_id,
                "device_id": None,
                "created_at": alert.created_at.isoformat(),
            },
        }
        await communicator.disconnect()

    run(scenario)


def test_evaluations_fleet_and_health_updates_have_their_shapes(make_user, rollout_factory):
    headers = session_headers(make_user(roles.VIEWER))
    rollout = rollout_factory("pilot")

    def send_all():
        evaluation = EvaluationFactory(rollout=rollout, action="WAIT", reason="Too little data.")
        broadcast.broadcast_evaluation(evaluation)
        broadcast.broadcast_fleet()
        broadcast.broadcast_health()

    async def scenario():
        communicator = await connected(headers)
        await database_sync_to_async(send_all)()
        evaluation = await communicator.receive_json_from(timeout=2)
        assert evaluation["type"] == "evaluation"
        assert evaluation["data"]["rollout_id"] == rollout.rollout_id
        assert evaluation["data"]["action"] == "WAIT"
        fleet = await communicator.receive_json_from(timeout=2)
        assert fleet["type"] == "fleet_update"
        assert fleet["data"]["emergency_stop"] is False
        rings = [await communicator.receive_json_from(timeout=2) for _ in range(4)]
        assert [m["ring"] for m in rings] == ["pilot", "ring_5", "ring_25", "ring_100"]
        pilot = rings[0]
        assert pilot["type"] == "health_update"
        assert pilot["total_devices"] == 3
        assert pilot["data"]["crash_free_rate"] == pytest.approx(0.998)
        await communicator.disconnect()

    run(scenario)


def test_a_broadcast_never_raises_when_the_channel_layer_is_down(settings, rollout_factory, caplog):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1"]},
        }
    }
    rollout = rollout_factory("created")
    broadcast.broadcast_rollout(rollout.pk)
    broadcast.broadcast_fleet()
    assert "not sent" in caplog.text


def test_a_socket_is_closed_for_a_retry_when_the_channel_layer_is_down(settings, make_user):
    headers = session_headers(make_user(roles.VIEWER))
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1"]},
        }
    }

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws", headers=headers)
        ok, _ = await communicator.connect(timeout=5)
        assert ok
        # Not "connected": the page shows "reconnecting", retries with backoff and polls meanwhile.
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 1011}

    run(scenario)
