"""One simulated device, driven by time: enrollment, health checks and the deployment steps.

The device never sleeps. Its work is split in two, and `device.next_due()` says when either next
has something to do (everything it waits for — the next check, a download finishing, an
activation delay, a backoff, a reboot — is a timestamp):

    local_step(now)          never waits: the end of a reboot, activation and rollback timers, the
                             health check when its slot has come, which goes into the buffer;
    await network_step(now)  enrollment, then, when the backoff allows: queued deployment reports
                             in order, a download that is due (fetch, SHA-256), buffered checks
                             (one → /api/health, more → /api/health/batch), and the desired state
                             when the check-in is due.

Behind a site gateway (`DeviceSettings.via_gateway`, simulator.gateway) the device still takes its
checks on its own schedule and keeps them in its buffer, but never sends them: the gateway collects
them from every reachable device of its site and delivers them in batches, and settles each check
with the device once the server has answered (`settle_delivery`). Enrollment, the desired state
and deployment reports stay the device's own, under its own credential.

On the real clock the fleet runs local steps on schedule and at most one network step per device
alongside, so a slow server delays deliveries but never measurements. `await device.tick(now)`
does both in turn, for simulated time (tests, Fleet.advance).

A failed delivery leaves the data where it was; a check leaves the buffer only on a 2xx, so a
retry after a timeout may repeat a check the server stored, which the server counts once (same
device and timestamp).

Deployment phases follow the server's steps (SPEC §7, 002 B7):
    install:  DOWNLOADING → VERIFIED → (activate allowed) ACTIVATING → ACTIVATED
              DOWNLOADING → FAILED on a SHA-256 mismatch or a refused download
              ACTIVATING → FAILED on power loss: the device reboots on the old version
              FAILED → DOWNLOADING when the server says install again (the plan retries it)
    "none" while the device's wave is not released (or a retry waits out its backoff): it keeps
    the version it runs and asks again at its next check-in.
    rollback: ROLLING_BACK → ROLLED_BACK, without a download: devices keep the previous image
              (001: "keep previous working version always").
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from simulator import health
from simulator.api import Conflict, DeviceApi, Refused, Unauthorized, Unavailable
from simulator.backoff import Backoff

# A device whose enrollment key is refused will not be let in by retrying quickly.
ENROLL_REFUSED_WAIT_SECONDS = 60.0
DOWNLOAD_MIN_SECONDS = 1.0
DOWNLOAD_MAX_SECONDS = 4.0
ACTIVATION_SECONDS = (1.0, 3.0)
REBOOT_SECONDS = (10.0, 30.0)
# After a 409 the desired state is re-read soon, then less and less often if the server keeps
# refusing, so a disagreement cannot turn into a request loop.
CONFLICT_RECHECK_SECONDS = 2.0
FLUSH_ROUNDS = 4
RECENT_SECONDS = 60.0


class Phase(StrEnum):
    DOWNLOADING = "downloading"
    VERIFIED = "verified"
    ACTIVATING = "activating"
    ACTIVATED = "activated"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


IN_FLIGHT = (Phase.DOWNLOADING, Phase.VERIFIED, Phase.ACTIVATING)


@dataclass
class Deployment:
    """What the device is doing about one rollout."""

    rollout_id: str
    version: str
    from_version: str
    phase: Phase
    ready_at: float = math.inf
    artifact_url: str = ""
    size_bytes: int | None = None
    sha256: str = ""
    activate: bool = False
    # Epoch seconds on the device's own clock, which may be skewed.
    activate_after: float | None = None


@dataclass(frozen=True)
class DeviceSettings:
    interval: float = 5.0
    checkin_interval: float = 15.0
    # 30 minutes of checks at a 5 s interval; a longer outage loses the oldest (and counts them).
    buffer_limit: int = 360
    batch_size: int = 250
    # Each desired-state read is followed by the next one checkin_interval × (1 ± this) later.
    checkin_jitter: float = 0.0
    # A site gateway delivers this device's checks; the device never posts them itself.
    via_gateway: bool = False


class Observer:
    """Where a device tells the fleet what happened; the base class ignores everything."""

    def check_generated(self, now: float, lag: float) -> None: ...

    def checks_delivered(self, now: float, accepted: int, duplicates: int) -> None: ...

    def checks_dropped(self, count: int) -> None: ...

    def checks_rejected(self, count: int, reason: str) -> None: ...

    def failure(self, kind: str, detail: str) -> None: ...

    def notice(self, text: str) -> None: ...


def iso(timestamp: float) -> str:
    return (
        dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def parse_time(value: Any) -> float | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


class SimDevice:
    """A device of the simulated fleet. Ticks of one device never overlap (the fleet runs one
    loop per device), so its state needs no locking."""

    def __init__(
        self,
        device_id: str,
        *,
        api: DeviceApi,
        rng: random.Random,
        faults: health.FaultBook,
        enrollment_key: str,
        version: str,
        first_tick: float,
        settings: DeviceSettings | None = None,
        ring: str | None = None,
        variant: str = "",
        site: str = "",
        region: str = "",
        observer: Observer | None = None,
        clock: Callable[[], float] | None = None,
        metrics_rng: random.Random | None = None,
    ):
        self.device_id = device_id
        # Reads the time again after a network wait (which can take seconds on a loaded server):
        # a backoff counted from when the request started would already be over when it failed.
        # Without one, the `now` of the step is used throughout.
        self.clock = clock
        self.api = api
        self.rng = rng
        # The custom KPIs come from a generator of their own, so that drawing them leaves the
        # sequence of `rng` (and every seeded run's built-in figures) as it was.
        self.metrics_rng = metrics_rng or random.Random(f"{device_id}:metrics")
        self.faults = faults
        self.enrollment_key = enrollment_key
        self.settings = settings or DeviceSettings()
        self.observer = observer or Observer()
        self.requested_ring = ring
        self.ring = ring
        self.version = version
        self.variant = variant
        self.site = site
        self.region = region
        self.key = health.stable_unit(device_id)

        # enrolled: the server accepts our token now; known: we have been enrolled (and measure).
        self.enrolled = False
        self.known = False
        self.next_health_at = first_tick
        self.next_checkin_at = first_tick
        self.retry_at = first_tick
        self.backoff = Backoff()
        self.batch_size = self.settings.batch_size
        self.conflicts = 0
        self.buffer: deque[dict[str, Any]] = deque()
        self.outbox: deque[tuple[str, dict[str, Any]]] = deque()
        self.deployment: Deployment | None = None
        # Rollouts this device has rolled back: it does not start them again. A failed one it
        # starts again when the server says install (a retry); a final failure the server answers
        # with "none".
        self.finished: set[str] = set()
        self.condition = health.HEALTHY

        # Chaos (001), set by the fleet.
        self.power_loss_armed = False
        self.stuck_download = False
        self.clock_skew = 0.0
        self.partition_until = 0.0
        self.down_until = 0.0

        # For status and tests; `recent` holds about the last minute of samples.
        self.recent: deque[tuple[float, health.HealthSample]] = deque(
            maxlen=math.ceil(RECENT_SECONDS / self.settings.interval) + 1
        )
        self.last_sample: health.HealthSample | None = None
        self.last_sample_at: float | None = None
        self.last_delivered_at: float | None = None
        self.last_error: str | None = None
        self.generated = 0
        self.delivered = 0
        self.duplicates = 0
        self.dropped = 0
        self.rejected = 0

    # ---- schedule -------------------------------------------------------------------------

    def next_due(self, *, network: bool = True) -> float:
        """When this device next has something to do (fleet clock, epoch seconds). With
        network=False only its local timers count: the fleet asks that while a request of this
        device is in flight."""
        times = []
        if self.known:
            times.append(self.next_health_at)
        deployment = self.deployment
        if deployment is not None:
            if deployment.phase in (Phase.ACTIVATING, Phase.ROLLING_BACK):
                times.append(deployment.ready_at)
            elif deployment.phase is Phase.VERIFIED and deployment.activate and deployment.activate_after:
                times.append(deployment.activate_after - self.clock_skew)
        if network:
            times.append(self._network_due_at())
        return max(min(times, default=math.inf), self.down_until)

    def _network_due_at(self) -> float:
        if not self.enrolled:
            return self.retry_at
        times = [max(self.next_checkin_at, self.retry_at)]
        if self.outbox or (self.buffer and not self.settings.via_gateway):
            times.append(self.retry_at)
        deployment = self.deployment
        if deployment is not None and deployment.phase is Phase.DOWNLOADING:
            times.append(max(deployment.ready_at, self.retry_at))
        return min(times)

    def network_due(self, now: float) -> bool:
        return now >= self.down_until and now >= self._network_due_at()

    def device_clock(self, now: float) -> float:
        return now + self.clock_skew

    # ---- the tick ---------------------------------------------------------------------------

    async def tick(self, now: float) -> None:
        """Everything due at `now`, network included, one after the other (simulated time)."""
        self.local_step(now)
        if self.network_due(now):
            await self.network_step(now)

    def local_step(self, now: float) -> None:
        """What needs no network and never waits: the reboot, deployment timers, the health
        check (into the buffer). The fleet runs it on schedule even while a request is in flight,
        so a slow server delays deliveries, never measurements."""
        if now < self.down_until:
            self._skip_health_slots(now)
            return
        if self.next_health_at < self.down_until:
            # Back from a reboot: the slots that passed while the power was off stay empty.
            self._skip_health_slots(self.down_until)
        self.condition = self.faults.condition_for(
            ring=self.ring, version=self.version, now=now, device_key=self.key
        )
        self.api.link_down = self._link_down(now)
        if self.known:
            self._local_steps(now)

    async def network_step(self, now: float) -> None:
        """Enrollment, deliveries, download, check-in. The fleet runs one at a time per device."""
        if not self.enrolled:
            if not await self._attempt(self._enroll(now), now):
                return
            self._local_steps(self._now(now))
        # Checked again: power may have failed during this very activation.
        if self._now(now) >= self.down_until:
            await self._attempt(self._network_steps(now), now)

    def _now(self, fallback: float) -> float:
        return self.clock() if self.clock is not None else fallback

    def _link_down(self, now: float) -> str | None:
        if now < self.partition_until:
            return "simulated partition"
        if self.condition.silent:
            return "simulated network outage"
        return None

    async def _attempt(self, step: Awaitable[None], now: float) -> bool:
        """Run a network step; on failure schedule the retry. True when it went through."""
        try:
            await step
        except Unavailable as exc:
            self._back_off(self._now(now), exc.kind, exc.reason, retry_after=exc.retry_after)
            return False
        except Unauthorized as exc:
            now = self._now(now)
            if not self.enrolled:
                # A refused enrollment key does not fix itself in seconds.
                self.retry_at = now + ENROLL_REFUSED_WAIT_SECONDS * self.rng.uniform(1.0, 1.2)
                self._failure(f"enroll {exc.kind}", exc.reason)
                return False
            # Token revoked or forgotten (a fresh database): enroll again; the buffer is kept
            # and delivered under the new token.
            self.enrolled = False
            self.api.token = None
            self._back_off(now, exc.kind, exc.reason)
            return False
        except Refused as exc:
            self._back_off(self._now(now), exc.kind, exc.reason)
            return False
        self.backoff.reset()
        return True

    def _back_off(self, now: float, kind: str, reason: str, retry_after: float | None = None) -> None:
        self.retry_at = now + self.backoff.next_delay(self.rng, retry_after)
        self._failure(kind, reason)

    def _failure(self, kind: str, reason: str) -> None:
        self.last_error = reason
        self.observer.failure(kind, f"{self.device_id}: {reason}")

    async def _network_steps(self, now: float) -> None:
        await self._flush_outbox(now)
        await self._download_step(now)
        if not self.settings.via_gateway:
            await self._flush_health(now)
        if now >= self.next_checkin_at:
            await self._check_in(now)
            after = self._now(now)
            self._local_steps(after)
            if after >= self.down_until:
                await self._flush_outbox(after)

    # ---- enrollment ----------------------------------------------------------------------------

    async def _enroll(self, now: float) -> None:
        payload: dict[str, Any] = {
            "device_id": self.device_id,
            "enrollment_key": self.enrollment_key,
            "version": self.version,
        }
        if self.requested_ring:
            payload["ring"] = self.requested_ring
        if self.variant:
            payload["variant"] = self.variant
        if self.site:
            payload["site"] = self.site
        if self.region:
            payload["region"] = self.region
        answer = await self.api.enroll(payload)
        now = self._now(now)
        # On re-enrollment the server keeps the ring it has for the device: that one counts.
        self.ring = answer.get("ring") or self.ring
        self.enrolled = True
        if not self.known:
            # Measuring starts once the device has joined: its first check goes out right away.
            self.known = True
            self.next_health_at = max(self.next_health_at, now)
        if self.settings.checkin_jitter > 0:
            # A fleet that boots together would otherwise ask all at once, and then again in step
            # every interval: the first read comes anywhere within one interval instead.
            self.next_checkin_at = now + self.rng.uniform(0.0, self.settings.checkin_interval)
        else:
            # A device that just joined asks at once what it should run.
            self.next_checkin_at = now

    # ---- health ------------------------------------------------------------------------------

    def _skip_health_slots(self, now: float) -> None:
        """Slots that pass while the device is off or unknown to the server produce no check."""
        interval = self.settings.interval
        if self.next_health_at <= now:
            self.next_health_at += interval * (math.floor((now - self.next_health_at) / interval) + 1)

    def _record_health(self, now: float) -> None:
        self.observer.check_generated(now, now - self.next_health_at)
        self._buffer(self._make_check(now))
        # Fixed rate: the next slot keeps the phase; slots missed by a late tick are skipped.
        self.next_health_at += self.settings.interval
        self._skip_health_slots(now)

    def _make_check(self, now: float) -> dict[str, Any]:
        sample = health.sample(self.rng, self.condition, metrics_rng=self.metrics_rng)
        self.last_sample, self.last_sample_at = sample, now
        self.recent.append((now, sample))
        self.generated += 1
        return {
            "device_id": self.device_id,
            "ring": self.ring,
            "version": self.version,
            "boot_ok": sample.boot_ok,
            "crash_free": sample.crash_free,
            "checkin_latency_ms": sample.checkin_latency_ms,
            # The device's own clock: skewed under clock-skew chaos; the server windows on
            # receive time, so such checks still count.
            "timestamp": iso(self.device_clock(now)),
            "availability": sample.availability,
            "event_lag_ms": sample.event_lag_ms,
            "dropped_events": sample.dropped_events,
            "metrics": dict(sample.metrics),
        }

    def _buffer(self, check: dict[str, Any]) -> None:
        if len(self.buffer) >= self.settings.buffer_limit:
            self.buffer.popleft()
            self.dropped += 1
            self.observer.checks_dropped(1)
        self.buffer.append(check)

    async def _flush_health(self, now: float) -> None:
        # Bounded, so that a device whose buffer keeps filling during slow answers still gets to
        # its check-in; what is left goes out in the next step.
        for _ in range(FLUSH_ROUNDS):
            if not self.buffer:
                return
            if len(self.buffer) == 1:
                await self._send_one(now)
            else:
                await self._send_batch(now)

    async def _send_one(self, now: float) -> None:
        check = self.buffer[0]
        try:
            await self.api.post_health(check)
        except Refused as exc:
            if isinstance(exc, Unauthorized):
                raise
            self._reject(1, exc.reason)
        else:
            self._delivered(self._now(now), accepted=1, duplicates=0)
        self._unbuffer([check])

    async def _send_batch(self, now: float) -> None:
        chunk = list(itertools.islice(self.buffer, self.batch_size))
        try:
            answer = await self.api.post_health_batch(chunk)
        except Refused as exc:
            if isinstance(exc, Unauthorized):
                raise
            if exc.status == 413 and len(chunk) > 1:
                # The server takes smaller batches than we sent: halve and try again; the checks
                # themselves are fine and must not be dropped.
                self.batch_size = max(1, len(chunk) // 2)
                return
            self._reject(len(chunk), exc.reason)
        else:
            rejected = answer.get("rejected") or []
            if rejected:
                self._reject(len(rejected), str(rejected[0])[:300])
            self._delivered(
                self._now(now),
                accepted=int(answer.get("accepted", 0)),
                duplicates=int(answer.get("duplicates", 0)),
            )
        # Acknowledged (or refused for good) as a whole: none of these is sent again.
        self._unbuffer(chunk)

    def _unbuffer(self, sent: list[dict[str, Any]]) -> None:
        """Remove exactly the checks that were sent. By identity, not position: while the request
        was in flight new checks were appended, and a full buffer may have dropped old ones."""
        sent_ids = {id(check) for check in sent}
        self.buffer = deque(check for check in self.buffer if id(check) not in sent_ids)

    # ---- delivery through a site gateway ---------------------------------------------------

    def gateway_reachable(self, now: float) -> bool:
        """Whether the site gateway can collect this device's checks now: not while the device is
        off, partitioned or silenced by a network fault; its checks then wait on the device."""
        return now >= self.down_until and self._link_down(now) is None

    def settle_delivery(self, now: float, sent: list[dict[str, Any]], refused: list[str]) -> None:
        """The server answered a gateway batch holding `sent` (checks of this device): every one
        leaves the buffer, acknowledged, or refused for good for each of the `refused` reasons.
        The fleet's delivery counters are the gateway's to update: it has the server's split into
        stored and duplicate checks."""
        self._unbuffer(sent)
        if refused:
            self._reject(len(refused), refused[0])
        accepted = len(sent) - len(refused)
        if accepted > 0:
            self.delivered += accepted
            self.last_delivered_at = now

    def _delivered(self, now: float, *, accepted: int, duplicates: int) -> None:
        self.delivered += accepted
        self.duplicates += duplicates
        self.last_delivered_at = now
        self.observer.checks_delivered(now, accepted, duplicates)

    def _reject(self, count: int, reason: str) -> None:
        self.rejected += count
        self.last_error = reason
        self.observer.checks_rejected(count, f"{self.device_id}: {reason}")

    # ---- desired state -------------------------------------------------------------------

    async def _check_in(self, now: float) -> None:
        self.next_checkin_at = now + self.checkin_delay()
        try:
            desired = await self.api.desired_state()
        except Refused as exc:
            if isinstance(exc, Unauthorized):
                raise
            self._failure(f"desired-state {exc.kind}", exc.reason)
            return
        self.follow(desired, self._now(now))

    def checkin_delay(self) -> float:
        """Seconds until the next desired-state read: the interval, jittered when asked to."""
        interval, jitter = self.settings.checkin_interval, self.settings.checkin_jitter
        if jitter <= 0:
            return interval
        return interval * self.rng.uniform(1.0 - jitter, 1.0 + jitter)

    def follow(self, desired: dict[str, Any], now: float) -> None:
        """Act on a desired-state answer."""
        action = desired.get("action")
        if action == "install":
            self._on_install(desired, now)
        elif action == "rollback":
            self._on_rollback(desired, now)
        elif action == "none":
            self._on_none()
        else:
            self._failure("desired-state malformed", f"unknown action {action!r}")

    def _on_install(self, desired: dict[str, Any], now: float) -> None:
        rollout_id = str(desired.get("rollout_id") or "")
        release = desired.get("release") or {}
        version = release.get("version")
        if not rollout_id or not version:
            self._failure("desired-state malformed", "install without rollout_id or release version")
            return
        if rollout_id in self.finished:
            return
        activate = bool(desired.get("activate"))
        activate_after = parse_time(desired.get("activate_after"))
        current = self.deployment
        if current is not None and current.rollout_id == rollout_id and current.version == version:
            if current.phase is Phase.FAILED:
                self._retry(current, desired, now)
                return
            current.activate, current.activate_after = activate, activate_after
            if current.phase is Phase.ACTIVATING and not activate:
                # Paused while the activation timer ran: wait for the rollout to resume.
                current.phase, current.ready_at = Phase.VERIFIED, math.inf
            return
        size = release.get("size_bytes")
        self.deployment = Deployment(
            rollout_id=rollout_id,
            version=version,
            from_version=self.version,
            phase=Phase.DOWNLOADING,
            ready_at=math.inf if self.stuck_download else now + self.download_seconds(size),
            artifact_url=release.get("artifact_url") or "",
            size_bytes=size if isinstance(size, int) else None,
            sha256=(release.get("sha256") or "").lower(),
            activate=activate,
            activate_after=activate_after,
        )
        self._report(rollout_id, "downloading")

    def _retry(self, failed: Deployment, desired: dict[str, Any], now: float) -> None:
        """Told to install a release whose last try failed: the server retries it (the plan's
        retry policy, after its backoff). Not while the failure is still on its way to the
        server, which would read the new download as coming before it."""
        if any(rollout_id == failed.rollout_id for rollout_id, _ in self.outbox):
            return
        self.deployment = None
        self._on_install(desired, now)

    def _on_rollback(self, desired: dict[str, Any], now: float) -> None:
        rollout_id = str(desired.get("rollout_id") or "")
        if not rollout_id or rollout_id in self.finished:
            return
        current = self.deployment
        ours = current if current is not None and current.rollout_id == rollout_id else None
        if ours is not None and ours.phase is Phase.ROLLING_BACK:
            return
        release = desired.get("release") or {}
        target = (
            release.get("version")
            or desired.get("version")
            or (ours.from_version if ours else "")
            or self.version
        )
        if target == self.version:
            # Never activated (or already back): nothing to undo, only to confirm.
            self.deployment = Deployment(rollout_id, target, self.version, Phase.ROLLED_BACK)
            self.finished.add(rollout_id)
            self._report(rollout_id, "rolled_back")
            return
        self.deployment = Deployment(
            rollout_id,
            target,
            self.version,
            Phase.ROLLING_BACK,
            ready_at=now + self.rng.uniform(*ACTIVATION_SECONDS),
        )

    def _on_none(self) -> None:
        # Whatever was unfinished is no longer wanted (the deployment was cancelled). A finished
        # one is kept, so that status can tell "activated" from "never asked".
        if self.deployment is not None and self.deployment.phase in (*IN_FLIGHT, Phase.ROLLING_BACK):
            self.deployment = None

    # ---- deployment steps --------------------------------------------------------------------

    def download_seconds(self, size_bytes: Any) -> float:
        """A small, size-dependent delay: each device has its own bandwidth (2–20 MB/s)."""
        bandwidth = self.rng.uniform(2e6, 20e6)
        size = size_bytes if isinstance(size_bytes, int) and size_bytes > 0 else 0
        return min(DOWNLOAD_MAX_SECONDS, DOWNLOAD_MIN_SECONDS + size / bandwidth + self.rng.uniform(0.0, 0.5))

    def _local_steps(self, now: float) -> None:
        self._advance_deployment(now)
        if now >= self.next_health_at:
            self._record_health(now)

    def _advance_deployment(self, now: float) -> None:
        deployment = self.deployment
        if deployment is None:
            return
        if deployment.phase is Phase.VERIFIED:
            self._maybe_start_activation(deployment, now)
        if deployment.phase is Phase.ACTIVATING and now >= deployment.ready_at:
            if self.power_loss_armed:
                self._lose_power(deployment, now)
                return
            self.version = deployment.version
            deployment.phase = Phase.ACTIVATED
            self._report(deployment.rollout_id, "activated")
        elif deployment.phase is Phase.ROLLING_BACK and now >= deployment.ready_at:
            self.version = deployment.version
            deployment.phase = Phase.ROLLED_BACK
            self.finished.add(deployment.rollout_id)
            self._report(deployment.rollout_id, "rolled_back")

    def _maybe_start_activation(self, deployment: Deployment, now: float) -> None:
        if not deployment.activate:
            return
        if deployment.activate_after is not None and self.device_clock(now) < deployment.activate_after:
            return
        deployment.phase = Phase.ACTIVATING
        deployment.ready_at = now + self.rng.uniform(*ACTIVATION_SECONDS)

    def _lose_power(self, deployment: Deployment, now: float) -> None:
        """Power fails while the new image is being switched in: the device reboots, finds the new
        image never marked good and boots the previous one (001 "power loss → boots to last working
        version"), then says so."""
        self.power_loss_armed = False
        self.down_until = now + self.rng.uniform(*REBOOT_SECONDS)
        deployment.phase = Phase.FAILED
        error = (
            f"Power lost while activating {deployment.version}; "
            f"rebooted on the previous version {self.version}."
        )
        diagnostics = (
            f"[boot] unclean shutdown detected\n[boot] slot B ({deployment.version}) not marked good\n"
            f"[boot] falling back to slot A ({self.version})"
        )
        self._report(deployment.rollout_id, "failed", error=error, diagnostics=diagnostics)
        self.observer.notice(f"{self.device_id}: power lost during activation, back on {self.version}")

    async def _download_step(self, now: float) -> None:
        deployment = self.deployment
        if deployment is None or deployment.phase is not Phase.DOWNLOADING or now < deployment.ready_at:
            return
        if deployment.artifact_url and self.api.is_local(deployment.artifact_url):
            error = await self._verify_download(deployment)
            now = self._now(now)
            if error:
                self._fail_deployment(deployment, error)
                return
        # An artifact hosted elsewhere (https://updates.example.com/...) is not fetched: these
        # machines have no internet, and the device token must never be sent to a third party.
        # The device takes the release's announced size as downloaded and counts it verified by
        # size only; a real device would hash what it fetched exactly as _verify_download does.
        # A release with no artifact at all (metadata only) is treated the same way.
        deployment.phase = Phase.VERIFIED
        self._report(deployment.rollout_id, "verified")
        self._maybe_start_activation(deployment, now)

    async def _verify_download(self, deployment: Deployment) -> str | None:
        """Fetch the artifact and compare its SHA-256; the error to report, or None when it matches."""
        if not deployment.sha256:
            return "The release gives no SHA-256: refusing to install an artifact that cannot be verified."
        try:
            size, digest = await self.api.download_sha256(deployment.artifact_url)
        except Refused as exc:
            # Unavailable propagates: the download is retried after the backoff.
            return f"Artifact download refused: {exc.reason}"
        if digest != deployment.sha256:
            return f"SHA-256 mismatch: the release says {deployment.sha256}, the download is {digest}."
        if deployment.size_bytes is not None and size != deployment.size_bytes:
            return f"Size mismatch: the release says {deployment.size_bytes} bytes, the download is {size}."
        return None

    def _fail_deployment(self, deployment: Deployment, error: str) -> None:
        deployment.phase = Phase.FAILED
        self._report(deployment.rollout_id, "failed", error=error)
        self.observer.notice(f"{self.device_id}: deployment {deployment.rollout_id} failed: {error}")

    # ---- deployment reports ----------------------------------------------------------------

    def _report(self, rollout_id: str, state: str, *, error: str = "", diagnostics: str = "") -> None:
        payload: dict[str, Any] = {"state": state}
        if error:
            payload["error"] = error
        if diagnostics:
            payload["diagnostics"] = diagnostics
        self.outbox.append((rollout_id, payload))

    async def _flush_outbox(self, now: float) -> None:
        while self.outbox:
            rollout_id, payload = self.outbox[0]
            try:
                await self.api.report(rollout_id, payload)
            except Refused as exc:
                if isinstance(exc, Unauthorized):
                    raise
                self._report_refused(rollout_id, payload["state"], exc, self._now(now))
                continue
            self.outbox.popleft()
            self.conflicts = 0

    def _report_refused(self, rollout_id: str, state: str, exc: Refused, now: float) -> None:
        """409 (the step is not allowed now) or 404 (no such deployment): the server's view wins.
        Drop the refused report, forget unfinished work on that rollout and re-read the desired
        state soon. Later reports stay queued: an `activated` refused because the rollout was
        rolled back meanwhile must not take the device's `rolled_back` with it."""
        self.outbox.popleft()
        deployment = self.deployment
        if deployment is not None and deployment.rollout_id == rollout_id and deployment.phase in IN_FLIGHT:
            self.deployment = None
        self.conflicts += 1
        delay = min(self.settings.checkin_interval, CONFLICT_RECHECK_SECONDS * 2 ** (self.conflicts - 1))
        self.next_checkin_at = min(self.next_checkin_at, now + delay)
        kind = "report conflict" if isinstance(exc, Conflict) else f"report {exc.kind}"
        self._failure(kind, f"{state} for {rollout_id}: {exc.reason}")

    # ---- chaos ------------------------------------------------------------------------------

    def unstick(self, now: float) -> None:
        """Stuck-download chaos cleared: a download that hung completes as a fresh one would."""
        self.stuck_download = False
        deployment = self.deployment
        if (
            deployment is not None
            and deployment.phase is Phase.DOWNLOADING
            and math.isinf(deployment.ready_at)
        ):
            deployment.ready_at = now + self.download_seconds(deployment.size_bytes)

    def stick(self) -> None:
        self.stuck_download = True
        deployment = self.deployment
        if deployment is not None and deployment.phase is Phase.DOWNLOADING:
            deployment.ready_at = math.inf

    @property
    def phase(self) -> str:
        return self.deployment.phase.value if self.deployment else "idle"
