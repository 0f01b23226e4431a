"""An in-memory SafeRoll device API behind httpx.MockTransport, for driving simulated devices
and their site gateways."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from simulator.api import DeviceApi
from simulator.device import DeviceSettings, SimDevice
from simulator.health import FaultBook

BASE_URL = "http://saferoll.test"
KEY = "fleet-key"
GATEWAY_TOKEN = "gateway-token"
T0 = 1_750_000_000.0


def run(coroutine):
    return asyncio.run(coroutine)


def release(version: str, content: bytes, **extra: Any) -> dict[str, Any]:
    data = {
        "version": version,
        "artifact_url": f"{BASE_URL}/api/releases/{version}/artifact",
        "size_bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "signature": "sig",
    }
    data.update(extra)
    return data


def install(
    rollout_id: str, rel: dict[str, Any], *, activate: bool = True, activate_after: str | None = None
):
    return {
        "action": "install",
        "rollout_id": rollout_id,
        "release": rel,
        "activate": activate,
        "activate_after": activate_after,
    }


@dataclass
class FakeServer:
    """Just enough of the device protocol: enrollment, health (deduplicated on device + timestamp),
    batch, desired state, deployment reports and artifacts. Switches make it fail on purpose."""

    ring: str = "pilot"
    tokens: dict[str, str] = field(default_factory=dict)
    rings: dict[str, str] = field(default_factory=dict)
    stored: dict[tuple[str, str], dict] = field(default_factory=dict)
    desired: dict[str, dict] = field(default_factory=dict)
    reports: list[tuple[str, str, dict]] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    # Answer everything but enrollment with this status (e.g. 503) while set.
    down_status: int | None = None
    retry_after: str | None = None
    # Deployment states answered with 409.
    conflict_states: set[str] = field(default_factory=set)
    # Health answers: store the check, then lose the answer (a read timeout) this many times.
    lose_answers: int = 0
    # Larger batches are refused with 413.
    batch_limit: int = 1000
    enrollments: int = 0
    enrolled_as: dict[str, dict] = field(default_factory=dict)
    batch_calls: int = 0
    duplicates: int = 0
    # Gateways: the API token accepted on the batch endpoint ("Authorization: Token <t>"), the
    # device ids whose checks are refused there (as the server refuses an invalid check), and
    # the device ids of each gateway batch received, in order.
    gateway_token: str = GATEWAY_TOKEN
    refused_devices: set[str] = field(default_factory=set)
    gateway_batches: list[list[str]] = field(default_factory=list)
    # Gateway batches: store them, then lose the answer this many times.
    lose_batch_answers: int = 0
    # Failures the plan retries: the desired state keeps saying install after them. A failure
    # past these is final and the desired state says none, as SafeRoll answers.
    retries: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=BASE_URL, transport=self.transport())

    # ---- handler ---------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if path == "/api/devices/enroll":
            return self._enroll(json.loads(request.content))
        if self.down_status is not None:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return httpx.Response(self.down_status, json={"error": "database unavailable"}, headers=headers)
        if path == "/api/health/batch" and request.headers.get("Authorization", "").startswith("Token "):
            return self._gateway_batch(request)
        device_id = self._device(request)
        if device_id is None:
            return httpx.Response(401, json={"error": "Unknown or revoked device token."})
        if path == "/api/health":
            return self._health(device_id, json.loads(request.content), request)
        if path == "/api/health/batch":
            return self._batch(device_id, json.loads(request.content))
        if path == "/api/device/desired-state":
            return httpx.Response(200, json=self.desired.get(device_id, {"action": "none", "version": ""}))
        if path.startswith("/api/device/deployments/"):
            return self._report(device_id, path.rsplit("/", 1)[1], json.loads(request.content))
        if path.startswith("/api/releases/") and path.endswith("/artifact"):
            version = path.split("/")[3]
            if version not in self.artifacts:
                return httpx.Response(404, json={"error": "no artifact"})
            return httpx.Response(200, content=self.artifacts[version])
        return httpx.Response(404, json={"error": f"no route {path}"})

    def _device(self, request: httpx.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Device":
            return None
        return next((device for device, known in self.tokens.items() if known == token), None)

    def _enroll(self, body: dict) -> httpx.Response:
        if body.get("enrollment_key") != KEY:
            return httpx.Response(403, json={"error": "Bad enrollment key."})
        device_id = body["device_id"]
        self.enrollments += 1
        self.enrolled_as[device_id] = body
        self.tokens[device_id] = f"token-{device_id}-{self.enrollments}"
        # Re-enrolling keeps the server's ring.
        self.rings.setdefault(device_id, body.get("ring") or self.ring)
        return httpx.Response(
            201, json={"device_id": device_id, "token": self.tokens[device_id], "ring": self.rings[device_id]}
        )

    def _store(self, device_id: str, check: dict) -> bool:
        key = (device_id, check["timestamp"])
        if key in self.stored:
            self.duplicates += 1
            return False
        self.stored[key] = check
        return True

    def _health(self, device_id: str, check: dict, request: httpx.Request) -> httpx.Response:
        if not isinstance(check.get("crash_free"), float | int):
            return httpx.Response(
                400, json={"error": "Invalid health check.", "fields": {"crash_free": ["bad"]}}
            )
        self._store(device_id, check)
        if self.lose_answers:
            self.lose_answers -= 1
            raise httpx.ReadTimeout("answer lost", request=request)
        return httpx.Response(200, json={"status": "ok"})

    def _batch(self, device_id: str, body: dict) -> httpx.Response:
        self.batch_calls += 1
        if len(body["checks"]) > self.batch_limit:
            return httpx.Response(413, json={"error": "A batch holds at most so many checks."})
        accepted = duplicates = 0
        rejected = []
        for index, check in enumerate(body["checks"]):
            if check.get("device_id") != device_id:
                rejected.append({"index": index, "device_id": check.get("device_id"), "errors": {}})
            elif self._store(device_id, check):
                accepted += 1
            else:
                duplicates += 1
        return httpx.Response(
            200, json={"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
        )

    def _gateway_batch(self, request: httpx.Request) -> httpx.Response:
        """The batch endpoint as a gateway holding the ingest permission sees it: checks of any
        enrolled device; unknown or refused devices' checks are listed in `rejected`, and when no
        check is accepted the answer is 400."""
        if request.headers["Authorization"] != f"Token {self.gateway_token}":
            return httpx.Response(401, json={"error": "Invalid token."})
        checks = json.loads(request.content)["checks"]
        self.gateway_batches.append([check.get("device_id") for check in checks])
        if len(checks) > self.batch_limit:
            return httpx.Response(413, json={"error": "A batch holds at most so many checks."})
        accepted = duplicates = 0
        rejected = []
        for index, check in enumerate(checks):
            device_id = check.get("device_id")
            if device_id not in self.tokens or device_id in self.refused_devices:
                rejected.append(
                    {"index": index, "device_id": device_id, "errors": {"device_id": ["refused"]}}
                )
            elif self._store(device_id, check):
                accepted += 1
            else:
                duplicates += 1
        if self.lose_batch_answers:
            self.lose_batch_answers -= 1
            raise httpx.ReadTimeout("answer lost", request=request)
        body = {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
        if not accepted and not duplicates:
            return httpx.Response(400, json={"error": "None of the checks was accepted.", **body})
        return httpx.Response(200, json=body)

    def _report(self, device_id: str, rollout_id: str, body: dict) -> httpx.Response:
        if body["state"] in self.conflict_states:
            return httpx.Response(409, json={"error": "not allowed now"})
        self.reports.append((device_id, rollout_id, body))
        if body["state"] == "failed":
            if self.retries:
                self.retries -= 1
                return httpx.Response(200, json={"state": "pending"})
            self.desired[device_id] = {"action": "none", "version": ""}
        return httpx.Response(200, json={"state": body["state"]})

    # ---- reading ---------------------------------------------------------------------------

    def checks_of(self, device_id: str) -> list[dict]:
        return sorted(
            (check for (device, _), check in self.stored.items() if device == device_id),
            key=lambda check: check["timestamp"],
        )

    def states(self, device_id: str, rollout_id: str | None = None) -> list[str]:
        return [
            body["state"]
            for device, rollout, body in self.reports
            if device == device_id and (rollout_id is None or rollout == rollout_id)
        ]

    def count(self, path: str) -> int:
        return sum(1 for _, seen in self.requests if seen == path)


def make_device(
    server: FakeServer,
    *,
    device_id: str = "tv-0001",
    seed: int = 1,
    faults: FaultBook | None = None,
    settings: DeviceSettings | None = None,
    version: str = "v2.0",
    observer=None,
) -> SimDevice:
    import random

    return SimDevice(
        device_id,
        api=DeviceApi(server.client()),
        rng=random.Random(seed),
        faults=faults or FaultBook(),
        enrollment_key=KEY,
        version=version,
        first_tick=T0,
        settings=settings,
        observer=observer,
    )


async def advance(device: SimDevice, until: float) -> float:
    """Tick the device at each of its due times up to `until`; returns the last tick time."""
    now = T0
    for _ in range(100_000):
        due = device.next_due()
        if due > until:
            return now
        now = max(now, due)
        await device.tick(now)
    raise AssertionError("the device never stopped being due: a scheduling loop")
