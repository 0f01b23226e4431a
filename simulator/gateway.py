"""Site gateways: the devices of a site report their health through one batch per interval.

SPEC §1: devices or gateways that report in volume use the batch path. A thousand devices each
posting a check every 5 s is 200 requests/s, more than the embedded server answers on two cores;
forty gateways posting their site's checks every 5 s is 8 requests/s carrying the same checks.

    devices  take a check on their own schedule into their own buffer (bounded, oldest dropped
             first, as without a gateway); enrollment, desired state and deployment reports stay
             theirs, under their own Device credential.
    gateway  every interval, collects the buffered checks of the site's reachable devices (round
             robin, oldest first, at most `batch_size`) and posts them to /api/health/batch as a
             service account holding `telemetry.ingest_health` (`Authorization: Token <token>`).

Delivery guarantees, the same as a device's own:
    - a check leaves its device's buffer only when the server answered the batch holding it: 2xx
      (stored, a duplicate of a stored check, or rejected for good in `rejected`) or a 4xx that
      retrying cannot fix. Nothing acknowledged is sent again; nothing unanswered is forgotten.
    - 5xx, 429, timeouts, connection errors: everything stays buffered; the gateway backs off
      (Retry-After honoured) and tries again; a lost answer makes the retry a duplicate, which
      the server counts once (same device and timestamp).
    - 413: the batch is halved and sent again at once.
    - 401/403: the gateway's token is not accepted; no device can fix that, so the gateway says
      so and tries again a minute later, keeping everything buffered.
    - a device that is off, partitioned or silenced by a network fault cannot hand its checks to
      the gateway: they wait on the device and go out in the first batch after it is back.

In the steady state a gateway sends exactly one batch per interval. After an outage the buffers
hold many intervals of checks, so a full batch is followed at once by the next until the backlog
is gone, to catch up within seconds (SPEC §14: recovery < 30 s). A gateway has one request in
flight at a time, so catching up never floods the server: it goes as fast as the server answers.

No Django: the clock and the random generator are passed in, like the devices'.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.api import GatewayApi, Refused, Unauthorized, Unavailable
from simulator.backoff import Backoff
from simulator.device import Observer, SimDevice

# A refused gateway token is an operator's problem (revoked, mistyped): retrying in seconds only
# fills the server's log.
TOKEN_REFUSED_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class GatewaySettings:
    interval: float = 5.0
    # The server's default SAFEROLL_HEALTH_BATCH_MAX; a 413 halves it.
    batch_size: int = 1000


class GatewayObserver(Observer):
    """Where a gateway tells the fleet about its batches; the base class ignores them."""

    def batch_sent(self, now: float, size: int) -> None: ...


def rejections(body: Any) -> dict[int, str]:
    """The server's `rejected` list as {index in the batch: reason}."""
    entries = body.get("rejected") if isinstance(body, dict) else None
    reasons: dict[int, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("index"), int):
            reasons[entry["index"]] = f"{entry.get('device_id')}: {entry.get('errors')}"[:300]
    return reasons


class SiteGateway:
    """The gateway of one site. Flushes of one gateway never overlap (the fleet runs one loop per
    gateway), and a flush only removes checks from buffers when the server has answered, so the
    checks of a batch in flight can never be sent a second time by the next batch."""

    def __init__(
        self,
        site: str,
        devices: Sequence[SimDevice],
        *,
        api: GatewayApi,
        rng: random.Random,
        first_flush: float,
        settings: GatewaySettings | None = None,
        observer: GatewayObserver | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.site = site
        self.devices = list(devices)
        self.api = api
        self.rng = rng
        self.settings = settings or GatewaySettings()
        self.observer = observer or GatewayObserver()
        self.clock = clock
        self.next_flush_at = first_flush
        self.retry_at = first_flush
        self.backoff = Backoff()
        self.batch_size = self.settings.batch_size
        self.batches = 0
        self.last_error: str | None = None

    def next_due(self) -> float:
        return max(self.next_flush_at, self.retry_at)

    def _now(self, fallback: float) -> float:
        return self.clock() if self.clock is not None else fallback

    async def tick(self, now: float) -> None:
        """Simulated time (Fleet.advance): the same as a flush."""
        await self.flush(now)

    async def flush(self, now: float) -> None:
        """Deliver what the site's devices have buffered: one batch, and more while they are full.
        Then wait for the next slot (fixed rate: a late flush does not shift the phase).

        Terminates: every answered batch takes at least one check out of the buffers for good, and
        a batch that is not full ends the flush."""
        interval = self.settings.interval
        if self.next_flush_at <= now:
            self.next_flush_at += interval * (math.floor((now - self.next_flush_at) / interval) + 1)
        while True:
            batch = self.collect(now)
            if not batch:
                return
            if not await self._send(batch, now):
                return
            # Full (or refused as too large, which halved batch_size): more may be waiting.
            if len(batch) < self.batch_size:
                return
            now = self._now(now)

    def collect(self, now: float) -> list[tuple[SimDevice, dict[str, Any]]]:
        """Up to batch_size buffered checks of the reachable devices, oldest first, taken round
        robin so that one device with a long backlog cannot crowd out the others."""
        sources = [device for device in self.devices if device.buffer and device.gateway_reachable(now)]
        batch: list[tuple[SimDevice, dict[str, Any]]] = []
        depth = 0
        while sources and len(batch) < self.batch_size:
            deeper = []
            for device in sources:
                if len(batch) >= self.batch_size:
                    break
                if depth < len(device.buffer):
                    batch.append((device, device.buffer[depth]))
                    deeper.append(device)
            sources = deeper
            depth += 1
        return batch

    async def _send(self, batch: list[tuple[SimDevice, dict[str, Any]]], now: float) -> bool:
        """Post one batch and settle it with its devices. True when the server answered it (the
        checks have left the buffers); False when it must be tried again later."""
        try:
            answer = await self.api.post_health_batch([check for _, check in batch])
        except Unavailable as exc:
            self.retry_at = self._now(now) + self.backoff.next_delay(self.rng, exc.retry_after)
            self._failure(exc.kind, exc.reason)
            return False
        except Unauthorized as exc:
            self.retry_at = self._now(now) + TOKEN_REFUSED_WAIT_SECONDS * self.rng.uniform(1.0, 1.2)
            self._failure(f"gateway {exc.kind}", exc.reason)
            return False
        except Refused as exc:
            if exc.status == 413 and len(batch) > 1:
                # Smaller batches than we sent: the checks themselves are fine, send them again.
                self.batch_size = max(1, len(batch) // 2)
                self._failure(f"gateway {exc.kind}", exc.reason)
                return True
            # Nothing of this batch can ever be stored by sending it again: every check is refused
            # for good, with its own reason where the server gave one.
            reasons = rejections(exc.body)
            self._settle(
                self._now(now), batch, {i: reasons.get(i, exc.reason) for i in range(len(batch))}, 0, 0
            )
            return True
        self.backoff.reset()
        self.last_error = None
        self._settle(
            self._now(now),
            batch,
            rejections(answer),
            int(answer.get("accepted", 0)),
            int(answer.get("duplicates", 0)),
        )
        return True

    def _settle(
        self,
        now: float,
        batch: list[tuple[SimDevice, dict[str, Any]]],
        refused: dict[int, str],
        accepted: int,
        duplicates: int,
    ) -> None:
        per_device: dict[SimDevice, tuple[list[dict[str, Any]], list[str]]] = {}
        for index, (device, check) in enumerate(batch):
            sent, reasons = per_device.setdefault(device, ([], []))
            sent.append(check)
            if index in refused:
                reasons.append(refused[index])
        for device, (sent, reasons) in per_device.items():
            device.settle_delivery(now, sent, reasons)
        self.batches += 1
        self.observer.batch_sent(now, len(batch))
        if accepted or duplicates:
            self.observer.checks_delivered(now, accepted, duplicates)

    def _failure(self, kind: str, reason: str) -> None:
        self.last_error = reason
        self.observer.failure(kind, f"gateway {self.site}: {reason}")
