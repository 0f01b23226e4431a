"""Live updates to the portal: the only module that sends to the websockets' "fleet" group.

The core and the rollouts app announce their changes with signals (saferoll.core.signals,
rollouts.signals); `connect()` listens to them. Every function queues its send with
`transaction.on_commit`, so a page never hears of a change that was rolled back, and at most once per
transaction per subject (a rollback writes several audit events; pages get one rollout_update). It never raises: when the channel layer is down (Redis gone) the change is
logged and the pages fall back to their periodic refresh.

Message types (000 §5.3, plus SafeRoll's own):
- ``rollout_update`` / ``rollout_created`` ``{"type", "data": <full rollout object>}``
- ``alert`` ``{"type", "data": {"id", "level", "kind", "title", "message", "rollout_id", "created_at"}}``
- ``evaluation`` ``{"type", "data": {"id", "rollout_id", "ring", "action", "reason", "source", ...}}``
- ``fleet_update`` ``{"type", "data": {"emergency_stop", "emergency_reason", ..., "autopilot_last_run"}}``
- ``health_update`` ``{"type", "ring", "total_devices", "data": <ring health>}``, one per ring
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Prefetch

from rollouts import signals as rollout_signals
from rollouts.api.rollouts import RolloutDetailSerializer
from rollouts.models import Rollout
from saferoll.core import signals as core_signals
from saferoll.core.models import AuditEvent, FleetState
from telemetry.selectors import reporting_rings, ring_health

logger = logging.getLogger(__name__)

FLEET_GROUP = "fleet"
# The consumer's handler for group messages (`fleet.message` → FleetConsumer.fleet_message).
HANDLER = "fleet.message"
# A channel layer that does not answer within this long is treated as down.
SEND_TIMEOUT_SECONDS = 2.0

# The in-memory layer's queues belong to the event loop that serves the sockets. A send from
# another thread (a Celery worker thread of the embedded default, a management command, a test)
# must be handed to that loop: asyncio queues are not thread-safe. The consumer records its loop.
_socket_loop: asyncio.AbstractEventLoop | None = None
_socket_loop_lock = threading.Lock()


def note_socket_loop() -> None:
    """Called by the consumer from its event loop: remember which loop serves this process's sockets."""
    global _socket_loop
    with _socket_loop_lock:
        _socket_loop = asyncio.get_running_loop()


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- payloads ----------------------------------------------------------------------------------


def rollout_payload(rollout) -> dict[str, Any]:
    """The full rollout object, exactly as `GET /api/rollouts/{rollout_id}` answers it (000 §5.2),
    made plain JSON so that any channel layer can carry it."""
    data = RolloutDetailSerializer(rollout).data
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def alert_payload(alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "level": alert.level,
        "kind": alert.kind,
        "title": alert.title,
        "message": alert.message,
        "rollout_id": alert.rollout.rollout_id if alert.rollout_id else None,
        "device_id": alert.device.device_id if alert.device_id else None,
        "created_at": _iso(alert.created_at),
    }


def evaluation_payload(evaluation) -> dict[str, Any]:
    return {
        "id": evaluation.pk,
        "rollout_id": evaluation.rollout.rollout_id,
        "ring": evaluation.ring,
        "action": evaluation.action,
        "reason": evaluation.reason,
        "source": evaluation.source,
        "created_at": _iso(evaluation.created_at),
        "evaluation": evaluation.detail,
    }


def fleet_payload() -> dict[str, Any]:
    state = FleetState.load()
    return {
        "emergency_stop": state.emergency_stop,
        "emergency_reason": state.emergency_reason,
        "emergency_raised_by": state.emergency_raised_by,
        "emergency_raised_at": _iso(state.emergency_raised_at),
        "autopilot_last_run": _iso(state.autopilot_last_run),
    }


def health_payloads() -> list[dict[str, Any]]:
    """One 000 §5.3 health message per ring of the fleet (configured rings first, then any other
    that has reported), from the rollups."""
    messages = []
    for ring in reporting_rings():
        health = ring_health(ring).to_dict()
        messages.append(
            {"type": "health_update", "ring": ring, "total_devices": health["total_devices"], "data": health}
        )
    return messages


# --- the public functions ----------------------------------------------------------------------


def broadcast_rollout(rollout_id: int, *, created: bool = False) -> None:
    """Tell every page that a rollout (by primary key) changed, or was created; read after commit."""

    def build() -> list[dict]:
        events = Prefetch("events", queryset=AuditEvent.objects.order_by("created_at", "id"))
        rollout = (
            Rollout.objects.select_related("release", "plan", "created_by")
            .prefetch_related(events)
            .filter(pk=rollout_id)
            .first()
        )
        if rollout is None:
            return []
        kind = "rollout_created" if created else "rollout_update"
        return [{"type": kind, "data": rollout_payload(rollout)}]

    _on_commit(build, what=f"rollout {rollout_id}", key=("rollout", rollout_id))


def broadcast_alert(alert) -> None:
    """An alert for operators (auto-rollback, auto-pause, a device that did not recover)."""
    message = {"type": "alert", "data": alert_payload(alert)}
    _on_commit(lambda: [message], what=f"alert {alert.pk}")


def broadcast_evaluation(evaluation) -> None:
    """A new autopilot evaluation, so gates panels refresh."""
    message = {"type": "evaluation", "data": evaluation_payload(evaluation)}
    _on_commit(lambda: [message], what=f"evaluation {evaluation.pk}")


def broadcast_fleet() -> None:
    """The fleet switches changed (emergency stop raised or lifted, autopilot heartbeat)."""
    _on_commit(lambda: [{"type": "fleet_update", "data": fleet_payload()}], what="fleet", key=("fleet",))


def broadcast_health() -> None:
    """Ring health of every ring of the fleet. Not throttled here: callers decide how often."""
    _on_commit(health_payloads, what="health", key=("health",))


# --- what the lower layers announce ------------------------------------------------------------


def connect() -> None:
    """Listen to the signals of the core and the rollouts app (called once, by the portal's AppConfig)."""
    core_signals.audit_recorded.connect(_audit_recorded, dispatch_uid="portal.broadcast.audit")
    core_signals.alert_raised.connect(_alert_raised, dispatch_uid="portal.broadcast.alert")
    rollout_signals.evaluation_stored.connect(_evaluation_stored, dispatch_uid="portal.broadcast.evaluation")
    rollout_signals.autopilot_round_began.connect(
        _autopilot_round_began, dispatch_uid="portal.broadcast.round"
    )


def _audit_recorded(sender, *, event: AuditEvent, rollout: Rollout | None, **kwargs) -> None:
    if rollout is not None:
        broadcast_rollout(rollout.pk, created=event.action == "CREATED")
    if event.object_type == "fleetstate":
        broadcast_fleet()


def _alert_raised(sender, *, alert, **kwargs) -> None:
    broadcast_alert(alert)  # a toast on every open page


def _evaluation_stored(sender, *, evaluation, **kwargs) -> None:
    broadcast_evaluation(evaluation)


def _autopilot_round_began(sender, **kwargs) -> None:
    broadcast_health()
    broadcast_fleet()


# --- sending -----------------------------------------------------------------------------------


def _on_commit(build: Callable[[], list[dict]], *, what: str, key: tuple | None = None) -> None:
    """Build and send after the current transaction commits (at once outside a transaction).

    With a key, a send already waiting for this transaction's commit covers the new one: it builds
    its message after the commit, so it carries the latest state. Django drops the callbacks of a
    transaction (or savepoint) that rolls back, so nothing is suppressed for a change that never happened."""
    pending = connection.run_on_commit if connection.in_atomic_block else []
    # Each callback is (savepoint ids, function, robust); the stubs know only the first two.
    if key is not None and any(getattr(entry[1], "broadcast_key", None) == key for entry in pending):
        return

    def send() -> None:
        try:
            messages = build()
        except Exception:
            logger.exception("live update of %s not sent: building the message failed", what)
            return
        for message in messages:
            _send(message, what=what)

    send.broadcast_key = key  # type: ignore[attr-defined]
    # robust: a failure here must never break the caller's commit path (send() catches anyway).
    transaction.on_commit(send, robust=True)


def _send(message: dict, *, what: str) -> None:
    """Hand one message to the channel layer; log and give up when it is not reachable."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        envelope = {"type": HANDLER, "message": message}
        if isinstance(layer, InMemoryChannelLayer):
            _send_in_memory(layer, envelope)
        else:
            async_to_sync(_group_send)(layer, envelope)
    except Exception as exc:
        # Redis down or slow: pages keep their 30-second refresh, so this is a warning, not an error.
        logger.warning("live update of %s not sent (%s: %s)", what, type(exc).__name__, exc)


async def _group_send(layer, envelope: dict) -> None:
    await asyncio.wait_for(layer.group_send(FLEET_GROUP, envelope), timeout=SEND_TIMEOUT_SECONDS)


def _send_in_memory(layer: InMemoryChannelLayer, envelope: dict) -> None:
    with _socket_loop_lock:
        loop = _socket_loop
    if loop is None or loop.is_closed():
        # No socket has ever connected to this process: nobody to tell.
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        loop.create_task(layer.group_send(FLEET_GROUP, envelope))
        return
    future = asyncio.run_coroutine_threadsafe(layer.group_send(FLEET_GROUP, envelope), loop)
    future.add_done_callback(_log_failure)


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("live update not delivered: %s", future.exception())
