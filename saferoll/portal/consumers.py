"""The portal's websocket (`WS /ws`): a thin consumer that forwards the "fleet" group to the page.

Authentication happens in the ASGI middleware (the session cookie); here the consumer only checks
that the user may read rollouts before joining the group. Everything it forwards was sent by
saferoll.portal.broadcast; pages only listen (a "ping" is answered with a "pong" for keep-alive).
"""

import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from rollouts.permissions import can_view_rollouts
from saferoll.portal import broadcast

logger = logging.getLogger(__name__)

# Application close codes (4000–4999): the page stops reconnecting on these and says why.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# The channel layer could not be joined (Redis down): the page reconnects with backoff and polls.
CLOSE_LAYER_DOWN = 1011


class FleetConsumer(AsyncJsonWebsocketConsumer):
    """One browser page listening to the fleet: joins the "fleet" group and forwards its messages."""

    joined = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        # The close codes only reach a browser on an accepted socket (a refused handshake is a bare 403).
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # The same check as the pages and the API (rollouts.permissions): every role reads rollouts.
        if not await database_sync_to_async(can_view_rollouts)(user):
            await self.accept()
            await self.close(code=CLOSE_FORBIDDEN)
            return
        try:
            await self.channel_layer.group_add(broadcast.FLEET_GROUP, self.channel_name)
        except Exception as exc:
            logger.warning("websocket: channel layer unavailable (%s: %s)", type(exc).__name__, exc)
            await self.accept()
            await self.close(code=CLOSE_LAYER_DOWN)
            return
        self.joined = True
        broadcast.note_socket_loop()
        await self.accept()
        await self.send_json({"type": "connected", "message": "Connected to SafeRoll"})

    async def disconnect(self, code) -> None:
        if self.joined:
            try:
                await self.channel_layer.group_discard(broadcast.FLEET_GROUP, self.channel_name)
            except Exception as exc:
                logger.info("websocket: group_discard failed (%s)", exc)

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def fleet_message(self, event: dict) -> None:
        await self.send_json(event["message"])
