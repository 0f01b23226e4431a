"""The simulator's one HTTP client: the SafeRoll device protocol (SPEC §7, §15) and the REST calls
a release manager makes in the scenarios (SPEC §12).

Every device has its own DeviceApi (its token, its network link), and every site gateway its own
GatewayApi (the gateway service account's token), over one httpx.AsyncClient that the whole fleet
shares, so a thousand devices use a bounded pool of keep-alive connections instead of a thousand
sockets. A scenario's ReleaseManagerApi holds a person's API token and a client of its own.

Answers are sorted into what the caller should do next:
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
import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from simulator.backoff import Backoff, parse_retry_after

ENROLL_PATH = "/api/devices/enroll"
HEALTH_PATH = "/api/health"
HEALTH_BATCH_PATH = "/api/health/batch"
DESIRED_STATE_PATH = "/api/device/desired-state"
DEPLOYMENT_PATH = "/api/device/deployments/{rollout_id}"


def http_client(
    api_url: str,
    *,
    timeout: float,
    connections: int | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An httpx client for the SafeRoll at `api_url`, with at most `connections` connections
    (httpx's default pool when not given)."""
    limits = (
        httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        if connections
        else httpx.Limits(max_connections=100, max_keepalive_connections=20)
    )
    return httpx.AsyncClient(
        base_url=api_url.rstrip("/"),
        headers=headers,
        transport=transport,
        limits=limits,
        # Waiting for a pooled connection is queueing, not failure: give it longer than a request
        # itself.
        timeout=httpx.Timeout(timeout, pool=timeout * 3),
    )


class ApiFailure(Exception):
    """A request that did not get a 2xx answer."""

    def __init__(self, reason: str, *, status: int | None = None, body: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body

    def retell(self, message: str) -> None:
        """Tell the failure as `message` (what was asked, what to check); `reason` and `kind`
        stay as they are."""
        self.args = (message,)

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
    reason = f"HTTP {status}: {error_text(body)}"
    if status in (401, 403):
        return Unauthorized(reason, status=status, body=body)
    if status == 409:
        return Conflict(reason, status=status, body=body)
    return Refused(reason, status=status, body=body)


def error_text(body: Any) -> str:
    """What an error answer says: its error, the reason given and the fields at fault."""
    if not isinstance(body, dict):
        return str(body)[:300]
    text = str(body.get("error") or body.get("detail") or body)
    if body.get("reason"):
        text = f"{text} ({body['reason']})"
    if body.get("fields"):
        text = f"{text} {body['fields']}"
    return text[:300]


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

    @property
    def base_url(self) -> str:
        return str(self.client.base_url).rstrip("/")

    def _check_link(self) -> None:
        if self.link_down:
            raise Unavailable(f"{self.link_down}: no route to the server")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"{self.scheme} {self.token}"} if self.token else {}

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        self._check_link()
        started = time.perf_counter()
        try:
            async with self.gate:
                response = await self.client.request(
                    method, url, json=json, params=params, headers=self._headers() if auth else None
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

    async def _json(self, method: str, url: str, **request: Any) -> Any:
        """The answer's JSON (`request`: `_send`'s keywords)."""
        response = await self._send(method, url, **request)
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


class ReleaseManagerApi(ApiClient):
    """The REST calls of the scenarios, as a person holding a release manager's API token
    (`Authorization: Token <token>`), over a client of its own.

    Reads are retried a few times when the server is briefly unavailable (its Retry-After
    honoured); commands (promote, pause, …) are not: a promote repeated after a timeout could
    promote twice."""

    scheme = "Token"
    READ_ATTEMPTS = 3

    def __init__(self, client: httpx.AsyncClient, *, token: str, rng: random.Random | None = None):
        super().__init__(client, token=token)
        self.rng = rng or random.Random()

    @classmethod
    def connect(
        cls,
        api_url: str,
        token: str,
        *,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> ReleaseManagerApi:
        client = http_client(
            api_url, timeout=timeout, transport=transport, headers={"Accept": "application/json"}
        )
        return cls(client, token=token)

    async def close(self) -> None:
        await self.client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        missing_ok: bool = False,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """The answer's JSON; None for a 404 when `missing_ok`; otherwise an ApiFailure whose
        message names the request."""
        try:
            return await self._retrying(method, path, json=json, params=params)
        except ApiFailure as exc:
            if missing_ok and exc.status == 404:
                return None
            exc.retell(self._told(exc, method, path))
            raise

    async def _retrying(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON, a read asked again (after a backoff) while the server cannot answer."""
        attempts = self.READ_ATTEMPTS if method == "GET" else 1
        backoff = Backoff(base=0.5)
        while True:
            try:
                return await self._json(method, path, **kwargs)
            except Unavailable as exc:
                if backoff.failures + 1 >= attempts:
                    raise
                await asyncio.sleep(backoff.next_delay(self.rng, exc.retry_after))

    def _told(self, failure: ApiFailure, method: str, path: str) -> str:
        if failure.status is None:
            return f"{method} {path}: SafeRoll at {self.base_url} did not answer ({failure.reason})."
        hint = (
            " Check the token: the scenarios need a release manager's."
            if isinstance(failure, Unauthorized)
            else ""
        )
        return f"{method} {path} → {failure.reason}{hint}"

    async def server_health(self) -> dict[str, Any]:
        return await self.call("GET", "/health")

    async def release(self, version: str) -> dict[str, Any] | None:
        return await self.call("GET", f"/api/releases/{version}", missing_ok=True)

    async def create_release(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/api/releases", json=payload)

    async def plan(self, name: str) -> dict[str, Any] | None:
        return await self.call("GET", f"/api/plans/{name}", missing_ok=True)

    async def create_plan(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/api/plans", json=payload)

    async def update_plan(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        return await self.call("PATCH", f"/api/plans/{name}", json=changes)

    async def unfinished_rollouts(self) -> list[dict[str, Any]]:
        """Rollouts that hold devices: active or paused."""
        page = await self.call("GET", "/api/rollouts", params={"status": ["active", "paused"]})
        return page.get("rollouts", [])

    async def create_rollout(self, version: str, plan: str) -> dict[str, Any]:
        return await self.call("POST", "/api/rollouts", json={"version": version, "plan": plan})

    async def rollout(self, rollout_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/api/rollouts/{rollout_id}")

    async def command(
        self, rollout_id: str, command: str, reason: str = "", *, override: bool = False
    ) -> dict[str, Any]:
        """start, promote, pause, resume or rollback; a refusal is a Conflict (HTTP 409). `override`
        promotes or resumes against a WAIT or PAUSE verdict (a release manager's, with a reason)."""
        body: dict[str, Any] = {"reason": reason}
        if override:
            body["override"] = True
        return await self.call("POST", f"/api/rollouts/{rollout_id}/{command}", json=body)

    async def decision(self, rollout_id: str) -> dict[str, Any] | None:
        """The gates' decision on the current ring (nothing is stored); None when no ring is deployed."""
        try:
            return await self.call("GET", f"/api/rollouts/{rollout_id}/should_promote")
        except Conflict:
            return None

    async def devices_on(self, version: str) -> list[dict[str, Any]]:
        """Every device whose installed version is `version`, all pages."""
        devices: list[dict[str, Any]] = []
        page = await self.call("GET", "/api/devices", params={"version": version, "page_size": 500})
        while True:
            devices.extend(page.get("results", []))
            if not page.get("next"):
                return devices
            page = await self.call("GET", page["next"])
