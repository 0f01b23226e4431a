"""The simulator's HTTP side of the SafeRoll device protocol (SPEC §7, §15).

Every device has its own DeviceApi (its token, its network link), and every site gateway its own
GatewayApi (the gateway service account's token), over one httpx.AsyncClient that the whole fleet
shares, so a thousand devices use a bounded pool of keep-alive connections instead of a thousand
sockets.

Answers are sorted into what the device should do next:
    2xx                          → the result
    connection error, timeout,
    5xx, 429                     → Unavailable: keep the data, try again later (Retry-After honoured)
    401 / 403                    → Unauthorized: enroll again, keep the data
    409                          → Conflict: the server's state moved on; re-read the desired state
    other 4xx                    → Refused: retrying the same request cannot succeed; drop it
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from simulator.backoff import parse_retry_after

ENROLL_PATH = "/api/devices/enroll"
HEALTH_PATH = "/api/health"
HEALTH_BATCH_PATH = "/api/health/batch"
DESIRED_STATE_PATH = "/api/device/desired-state"
DEPLOYMENT_PATH = "/api/device/deployments/{rollout_id}"


class ApiFailure(Exception):
    """A request that did not get a 2xx answer."""

    def __init__(self, reason: str, *, status: int | None = None, body: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body

    @property
    def kind(self) -> str:
        """A short label for counting failures: "HTTP 503", "ConnectError"."""
        return f"HTTP {self.status}" if self.status is not None else self.reason.split(":")[0]


class Unavailable(ApiFailure):
    """The server could not be reached or could not answer now: try again later."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason, status=status)
        self.retry_after = retry_after


class Refused(ApiFailure):
    """The server understood and said no; the same request will never succeed."""


class Unauthorized(Refused):
    """The device's credential (or the enrollment key) was not accepted."""


class Conflict(Refused):
    """The step is not allowed in the deployment's current state."""


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


def classify(response: httpx.Response) -> ApiFailure | None:
    """None for a 2xx; otherwise the failure the answer means for a device."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    if status == 429 or status >= 500:
        return Unavailable(
            f"HTTP {status}",
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    body = _body(response)
    reason = f"HTTP {status}: {_summary(body)}"
    if status in (401, 403):
        return Unauthorized(reason, status=status, body=body)
    if status == 409:
        return Conflict(reason, status=status, body=body)
    return Refused(reason, status=status, body=body)


def _summary(body: Any) -> str:
    if isinstance(body, dict):
        text = body.get("error") or body.get("detail") or body
        if body.get("fields"):
            text = f"{text} {body['fields']}"
        return str(text)[:300]
    return str(body)[:300]


class ApiClient:
    """Requests over the fleet's shared client, sorted into results and failures. `link_down` set
    to a reason makes every call fail as a connection error would, without touching the network:
    that is how partitions and outages are simulated, through exactly the path a real lost network
    takes."""

    # The scheme of the Authorization header that carries `token`.
    scheme: str

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        token: str | None = None,
        timer: Callable[[float], None] | None = None,
        gate: asyncio.Semaphore | None = None,
    ):
        self.client = client
        self.token = token
        self.link_down: str | None = None
        # Told how long each answer took (queueing for a connection included).
        self.timer = timer
        # Shared by the fleet and sized to its connection pool. httpcore re-scans every queued
        # request against every connection each time one is added or finishes; with a thousand
        # devices queued in the pool that alone saturated a core and answers took seconds even
        # from an instant server. Waiting here (a plain FIFO) keeps the pool's queue empty.
        self.gate = gate or contextlib.nullcontext()

    def _check_link(self) -> None:
        if self.link_down:
            raise Unavailable(f"{self.link_down}: no route to the server")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"{self.scheme} {self.token}"} if self.token else {}

    async def _send(self, method: str, url: str, *, json: Any = None, auth: bool = True) -> httpx.Response:
        self._check_link()
        started = time.perf_counter()
        try:
            async with self.gate:
                response = await self.client.request(
                    method, url, json=json, headers=self._headers() if auth else None
                )
            if self.timer is not None:
                self.timer(time.perf_counter() - started)
        except httpx.TimeoutException as exc:
            raise Unavailable(f"{type(exc).__name__}: timed out") from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
        failure = classify(response)
        if failure is not None:
            raise failure
        return response

    async def _json(self, method: str, url: str, *, json: Any = None, auth: bool = True) -> Any:
        response = await self._send(method, url, json=json, auth=auth)
        try:
            return response.json()
        except ValueError as exc:
            raise Refused(
                f"HTTP {response.status_code}: answer is not JSON", status=response.status_code
            ) from exc


class DeviceApi(ApiClient):
    """The calls a device makes, with its own credential (`Authorization: Device <token>`)."""

    scheme = "Device"

    async def enroll(self, payload: dict[str, Any]) -> dict[str, Any]:
        data = await self._json("POST", ENROLL_PATH, json=payload, auth=False)
        self.token = data["token"]
        return data

    async def post_health(self, check: dict[str, Any]) -> None:
        await self._send("POST", HEALTH_PATH, json=check)

    async def post_health_batch(self, checks: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._json("POST", HEALTH_BATCH_PATH, json={"checks": checks})

    async def desired_state(self) -> dict[str, Any]:
        return await self._json("GET", DESIRED_STATE_PATH)

    async def report(self, rollout_id: str, payload: dict[str, Any]) -> None:
        await self._send("POST", DEPLOYMENT_PATH.format(rollout_id=rollout_id), json=payload)

    def resolve(self, url: str) -> str:
        return urljoin(str(self.client.base_url), url)

    def is_local(self, url: str) -> bool:
        """Whether an artifact URL is served by the SafeRoll the device talks to."""
        target = urlsplit(self.resolve(url))
        base = urlsplit(str(self.client.base_url))
        return (target.scheme, target.netloc) == (base.scheme, base.netloc)

    async def download_sha256(self, url: str) -> tuple[int, str]:
        """Stream an artifact from SafeRoll and return its size and SHA-256, never holding it whole."""
        self._check_link()
        digest = hashlib.sha256()
        size = 0
        try:
            async with (
                self.gate,
                self.client.stream("GET", self.resolve(url), headers=self._headers()) as response,
            ):
                failure = classify(response)
                if failure is not None:
                    await response.aread()
                    raise classify(response) or failure
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                    size += len(chunk)
        except httpx.TimeoutException as exc:
            raise Unavailable(f"{type(exc).__name__}: timed out") from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
        return size, digest.hexdigest()


class GatewayApi(ApiClient):
    """The one call a site gateway makes: its devices' checks in batches, as a service account
    holding `telemetry.ingest_health` (`Authorization: Token <token>`)."""

    scheme = "Token"

    async def post_health_batch(self, checks: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._json("POST", HEALTH_BATCH_PATH, json={"checks": checks})
