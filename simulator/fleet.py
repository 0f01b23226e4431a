"""A simulated fleet over real HTTP: the library behind `manage.py simulate` and the scenario runner.

    fleet = Fleet(FleetConfig(api_url="http://127.0.0.1:8000", devices=1000, enrollment_key=key))
    await fleet.start()                    # enrolls and runs every device on the real clock
    fleet.inject(0.03, ring="ring_5")      # or version="v2.1", pattern=Pattern.GRADUAL
    fleet.chaos(ChaosKind.PARTITION, "pilot", 60)
    fleet.status()                         # per ring, plus achieved checks/s and schedule lag
    fleet.clear()
    await fleet.stop()                     # cancels the devices, closes the client, returns a summary

Scheduling: one asyncio task per device, each sleeping until its device's next action. Devices'
first ticks are spread evenly over one interval, so 1,000 devices at 5 s make a steady 200
checks/s rather than a burst of 1,000 every 5 s. All devices share one httpx.AsyncClient whose
connection pool is bounded: requests queue for a keep-alive connection instead of opening
a thousand sockets against a server on the same two cores.

Delivery: without a gateway token every device posts its own checks (one request per check, a
batch after an outage), 200 requests/s for 1,000 devices at 5 s. With `gateway_token` the devices
of each site (DEVICES_PER_SITE of them) hand their checks to a site gateway that posts one batch
per interval as a service account (simulator.gateway): 40 requests per interval for the same
1,000 devices. Desired-state reads (every `checkin_interval`, ± `checkin_jitter`) and deployment
reports stay the devices' own either way.

Determinism: with a seed, each device draws from its own generator seeded by (seed, device id),
and chaos picks devices from a generator seeded by the seed, so the same commands give the same
devices the same health, whatever the interleaving of network answers.

`ManualClock` + `advance(until)` run the same devices as a discrete-event simulation instead: no
waiting, each device ticked at exactly its due time. Tests use it; a rehearsal could too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from simulator.api import DeviceApi, GatewayApi, http_client
from simulator.chaos import ChaosKind, apply_chaos, clear_chaos, describe_chaos
from simulator.device import RECENT_SECONDS, DeviceSettings, SimDevice
from simulator.gateway import GatewaySettings, SiteGateway
from simulator.health import Fault, FaultBook, Pattern
from simulator.metrics import FleetMetrics

logger = logging.getLogger(__name__)

KNOWN_RING_ORDER = ("pilot", "ring_5", "ring_25", "ring_100")
REGIONS = ("north", "south", "east", "west")
DEVICES_PER_SITE = 25
# A device whose next action is already due after a tick waits this long rather than spinning.
MIN_STEP_SECONDS = 0.05
IN_FLIGHT_RECHECK_SECONDS = 1.0
# A device counts as reporting when the server acknowledged one of its checks this recently,
# in intervals.
REPORTING_INTERVALS = 3


@dataclass(frozen=True)
class FleetConfig:
    api_url: str
    devices: int = 1000
    interval: float = 5.0
    checkin_interval: float = 15.0
    enrollment_key: str = ""
    prefix: str = "tv"
    seed: int | None = None
    # Ring name → share (any scale); None lets the server assign rings at enrollment.
    rings: dict[str, float] | None = None
    version: str = "v2.0"
    # Hardware variants handed out in turn; the demo fleet's TVs (seed_demo), because a rollout
    # only targets devices whose variant the release supports. Empty: enroll without a variant.
    variants: tuple[str, ...] = ("tv-32-gen2", "tv-43-gen3", "tv-55-gen3")
    buffer_limit: int = 360
    batch_size: int = 250
    # Desired-state reads are spread by ± this share of checkin_interval (0: exactly periodic).
    checkin_jitter: float = 0.0
    # An API token of a service account holding telemetry.ingest_health: the checks then go
    # through one gateway per site in batches. None: every device posts its own.
    gateway_token: str | None = None
    # Most checks in one gateway batch (the server's default SAFEROLL_HEALTH_BATCH_MAX).
    gateway_batch_size: int = 1000
    # Devices of a site share its gateway; seeds the site names and the number of gateways.
    devices_per_site: int = DEVICES_PER_SITE
    # Connections of the gateways' own, beside the devices' max_connections: a gateway is its own
    # client on its own link, so its batches never queue behind a thousand devices' check-ins
    # (and deployment steps, in a rollout) waiting for the devices' connections.
    gateway_connections: int = 2
    # Small on purpose: httpcore's pool does work proportional to connections × requests on every
    # request, and a server on the same machine gains nothing from more parallel connections.
    max_connections: int = 8
    timeout: float = 10.0


class ManualClock:
    """Simulated time for driving a fleet step by step with `Fleet.advance`."""

    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


def parse_rings(text: str) -> dict[str, float]:
    """ "pilot:10,ring_5:5,ring_25:25,ring_100:60" → {"pilot": 10.0, ...}."""
    shares: dict[str, float] = {}
    for part in text.split(","):
        name, sep, share = part.strip().partition(":")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not name or not sep or value < 0:
            raise ValueError(f"Rings look like 'pilot:10,ring_5:5,ring_25:25,ring_100:60', not {text!r}.")
        shares[name] = value
    if sum(shares.values()) <= 0:
        raise ValueError("At least one ring needs a share above zero.")
    return shares


def assign_rings(count: int, shares: dict[str, float]) -> list[str]:
    """Ring of each device index: contiguous blocks sized by largest remainder, so 1,000 devices
    at 10/5/25/60 give exactly 100/50/250/600 (000 §8.2) and tv-0001…tv-0100 are the pilot."""
    total = sum(shares.values())
    exact = {name: count * share / total for name, share in shares.items()}
    sizes = {name: int(value) for name, value in exact.items()}
    leftovers = sorted(shares, key=lambda name: exact[name] - sizes[name], reverse=True)
    for name in leftovers[: count - sum(sizes.values())]:
        sizes[name] += 1
    return [name for name in shares for _ in range(sizes[name])]


def device_ids(prefix: str, count: int) -> list[str]:
    width = max(4, len(str(count)))
    return [f"{prefix}-{index:0{width}d}" for index in range(1, count + 1)]


def _ring_sort_key(ring: str) -> tuple[int, str]:
    return (KNOWN_RING_ORDER.index(ring) if ring in KNOWN_RING_ORDER else len(KNOWN_RING_ORDER), ring)


class Fleet:
    """The simulated devices, the faults and chaos in force, and what they measure."""

    def __init__(
        self,
        config: FleetConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.clock = clock
        self.seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
        self.faults = FaultBook()
        self.devices: list[SimDevice] = []
        self.gateways: list[SiteGateway] = []
        self.metrics = FleetMetrics(started_at=clock(), clock=clock)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task] = []
        self._chaos_rng = random.Random(f"{self.seed}:chaos")
        self._cpu_mark = (time.monotonic(), time.process_time())

    # ---- life cycle --------------------------------------------------------------------------

    def build(self) -> None:
        """Create the client and the devices without running them (idempotent)."""
        if self.devices:
            return
        # httpx logs every request at INFO: hundreds of lines a second would bury everything the
        # operator needs to see (and cost more CPU than the requests).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        config = self.config
        connections = config.max_connections + (config.gateway_connections if config.gateway_token else 0)
        self._client = client = http_client(
            config.api_url, timeout=config.timeout, connections=connections, transport=self._transport
        )
        ids = device_ids(config.prefix, config.devices)
        rings = assign_rings(len(ids), config.rings) if config.rings else [None] * len(ids)
        settings = DeviceSettings(
            interval=config.interval,
            checkin_interval=config.checkin_interval,
            buffer_limit=config.buffer_limit,
            batch_size=config.batch_size,
            checkin_jitter=config.checkin_jitter,
            via_gateway=bool(config.gateway_token),
        )
        start = self.clock()
        self.metrics = FleetMetrics(started_at=start, clock=self.clock)
        gate = asyncio.Semaphore(config.max_connections)
        for index, (device_id, ring) in enumerate(zip(ids, rings, strict=True)):
            rng = random.Random(f"{self.seed}:{device_id}")
            # Spread the first ticks evenly over one interval: a steady rate, not a burst.
            first_tick = start + config.interval * (index + rng.random()) / len(ids)
            self.devices.append(
                SimDevice(
                    device_id,
                    api=DeviceApi(client, timer=self.metrics.answer_time, gate=gate),
                    rng=rng,
                    metrics_rng=random.Random(f"{self.seed}:{device_id}:metrics"),
                    faults=self.faults,
                    enrollment_key=config.enrollment_key,
                    version=config.version,
                    first_tick=first_tick,
                    settings=settings,
                    ring=ring,
                    variant=config.variants[index % len(config.variants)] if config.variants else "",
                    site=f"site-{index // config.devices_per_site + 1:03d}",
                    region=REGIONS[(index // config.devices_per_site) % len(REGIONS)],
                    observer=self.metrics,
                    clock=self.clock,
                )
            )
        if config.gateway_token:
            self._build_gateways(start, client)

    def _build_gateways(self, start: float, client: httpx.AsyncClient) -> None:
        """One gateway per site. Their flushes are spread evenly over one interval, like the
        devices' ticks, so the server sees a steady trickle of batches rather than a burst."""
        config = self.config
        sites: dict[str, list[SimDevice]] = defaultdict(list)
        for device in self.devices:
            sites[device.site].append(device)
        settings = GatewaySettings(interval=config.interval, batch_size=config.gateway_batch_size)
        gate = asyncio.Semaphore(config.gateway_connections)
        for index, (site, devices) in enumerate(sites.items()):
            self.gateways.append(
                SiteGateway(
                    site,
                    devices,
                    api=GatewayApi(
                        client,
                        token=config.gateway_token,
                        timer=self.metrics.batch_answer_time,
                        gate=gate,
                    ),
                    rng=random.Random(f"{self.seed}:gateway:{site}"),
                    first_flush=start + config.interval * (index + 1) / len(sites),
                    settings=settings,
                    observer=self.metrics,
                    clock=self.clock,
                )
            )

    async def start(self) -> None:
        """Build the fleet and run every device (and gateway) on the real clock until `stop`."""
        self.build()
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run_device(device), name=f"sim-{device.device_id}")
                for device in self.devices
            ] + [
                asyncio.create_task(self._run_gateway(gateway), name=f"gateway-{gateway.site}")
                for gateway in self.gateways
            ]

    async def _run_device(self, device: SimDevice) -> None:
        """One device on the real clock. Local steps (the health check, timers) run on schedule;
        network steps run as a separate task, one at a time, so a slow answer delays deliveries
        but never the measurements: checks taken meanwhile wait in the buffer."""
        sending: asyncio.Task | None = None
        try:
            while True:
                delay = device.next_due(network=sending is None) - self.clock()
                if delay > 0:
                    if sending is None:
                        await asyncio.sleep(delay)
                    else:
                        # Wake at the next local deadline, as soon as the request returns, or
                        # after a second at most: what the answer said (an activation to start,
                        # the first check after enrolling) may move a local deadline earlier.
                        await asyncio.wait({sending}, timeout=min(delay, IN_FLIGHT_RECHECK_SECONDS))
                if sending is not None and sending.done():
                    self._collect(device, sending)
                    sending = None
                now = self.clock()
                self._guarded(device, now, device.local_step)
                if sending is None and device.network_due(now):
                    sending = asyncio.create_task(device.network_step(now))
                elif device.next_due(network=sending is None) <= now:
                    await asyncio.sleep(MIN_STEP_SECONDS)
        finally:
            # Nothing may be left mid-request when the client closes.
            if sending is not None:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)

    async def _run_gateway(self, gateway: SiteGateway) -> None:
        """One site gateway on the real clock: a flush at each slot (or retry), one at a time."""
        while True:
            delay = gateway.next_due() - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            now = self.clock()
            try:
                await gateway.flush(now)
            except Exception as exc:
                kind = f"bug {type(exc).__name__}"
                if kind not in self.metrics.failures:
                    logger.error("Simulated gateway %s failed", gateway.site, exc_info=exc)
                self.metrics.failure(kind, f"gateway {gateway.site}: {exc!r}")
                gateway.retry_at = now + 5.0
            if gateway.next_due() <= self.clock():
                await asyncio.sleep(MIN_STEP_SECONDS)

    def _collect(self, device: SimDevice, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._bug(device, exc, self.clock())

    def _guarded(self, device: SimDevice, now: float, step: Callable[[float], None]) -> None:
        try:
            step(now)
        except Exception as exc:
            self._bug(device, exc, now)

    def _bug(self, device: SimDevice, exc: BaseException, now: float) -> None:
        """A simulator bug must not take the fleet down: count it, log the first of its kind
        with its traceback, give the device a pause and carry on."""
        kind = f"bug {type(exc).__name__}"
        if kind not in self.metrics.failures:
            logger.error("Simulated device %s failed", device.device_id, exc_info=exc)
        self.metrics.failure(kind, f"{device.device_id}: {exc!r}")
        device.retry_at = now + 5.0
        device.next_health_at = max(device.next_health_at, now + self.config.interval)

    async def advance(self, until: float) -> int:
        """Discrete-event mode (needs a ManualClock): tick each device at exactly its due times up
        to `until`, in time order, then leave the clock at `until`. Returns the number of ticks."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() drives simulated time: build the fleet with a ManualClock.")
        self.build()
        ticks = 0
        actors: list[SimDevice | SiteGateway] = [*self.devices, *self.gateways]
        while actors:
            actor = min(actors, key=lambda a: a.next_due())
            due = actor.next_due()
            if due > until:
                break
            self.clock.now = max(self.clock.now, due)
            await actor.tick(self.clock.now)
            ticks += 1
        self.clock.now = max(self.clock.now, until)
        return ticks

    async def stop(self, *, final_delivery_seconds: float = 0.0) -> dict:
        """Cancel every device and gateway, close the client and return the final summary.

        With `final_delivery_seconds` the site gateways first deliver what their devices still
        hold (a check taken in the last interval has not gone out yet), for at most that long:
        a batch cut short stays in the buffers and is counted as still buffered, never as sent."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.gateways and final_delivery_seconds > 0 and self._client is not None:
            now = self.clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(
                        *(gateway.flush(now) for gateway in self.gateways), return_exceptions=True
                    ),
                    timeout=final_delivery_seconds,
                )
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        return self.summary()

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    # ---- commands --------------------------------------------------------------------------

    def inject(
        self,
        rate: float,
        *,
        ring: str | None = None,
        version: str | None = None,
        pattern: Pattern | str = Pattern.IMMEDIATE,
    ) -> Fault:
        """Make the devices of a ring, or those running a version, unwell (see simulator.health)."""
        return self.faults.inject(
            rate, now=self.clock(), ring=ring, version=version, pattern=Pattern(pattern)
        )

    def clear(self, *, ring: str | None = None, version: str | None = None) -> dict[str, int]:
        """Remove faults (of a target, or all) and, unless a version is named, end the chaos of
        the ring's devices (or of all)."""
        faults = self.faults.clear(ring=ring, version=version)
        chaos = 0
        if version is None:
            devices = self.devices if ring is None else self.in_ring(ring)
            chaos = clear_chaos(devices, now=self.clock())
        return {"faults": faults, "chaos_devices": chaos}

    def chaos(self, kind: ChaosKind | str, ring: str, value: float) -> int:
        """Run a chaos experiment on a ring; returns how many devices it affects."""
        return apply_chaos(ChaosKind(kind), self.in_ring(ring), value, rng=self._chaos_rng, now=self.clock())

    def in_ring(self, ring: str) -> list[SimDevice]:
        return [device for device in self.devices if device.ring == ring]

    def matching(self, *, ring: str | None = None, version: str | None = None) -> int:
        if version is not None:
            return sum(device.version == version for device in self.devices)
        return len(self.in_ring(ring or ""))

    def rings(self) -> list[str]:
        return sorted({device.ring for device in self.devices if device.ring}, key=_ring_sort_key)

    # ---- reading -----------------------------------------------------------------------------

    def status(self) -> dict:
        """Per ring: devices, version mix, recent health, share reporting, buffered checks; plus
        the achieved check rate against the target and the schedule lag."""
        now = self.clock()
        by_ring: dict[str, list[SimDevice]] = defaultdict(list)
        for device in self.devices:
            by_ring[device.ring or "(unassigned)"].append(device)
        return {
            "seed": self.seed,
            "devices": len(self.devices),
            "enrolled": sum(device.enrolled for device in self.devices),
            "target_per_s": round(len(self.devices) / self.config.interval, 1),
            **self.metrics.summary(now),
            "cpu_percent": self._cpu_percent(),
            "delivery": self._delivery(),
            "rings": {
                ring: self._ring_status(devices, now)
                for ring, devices in sorted(by_ring.items(), key=lambda kv: _ring_sort_key(kv[0]))
            },
            "faults": self.faults.describe(now),
            "chaos": describe_chaos(self.devices, now=now),
        }

    def _delivery(self) -> dict:
        """How checks reach the server: by each device, or by site gateways (with their errors)."""
        if not self.gateways:
            return {"mode": "device"}
        return {
            "mode": "gateway",
            "gateways": len(self.gateways),
            "last_errors": sorted({g.last_error for g in self.gateways if g.last_error})[:3],
        }

    def _ring_status(self, devices: list[SimDevice], now: float) -> dict:
        recent = now - REPORTING_INTERVALS * self.config.interval
        # The last minute of checks, like a short version of the server's window.
        samples = [sample for d in devices for taken, sample in d.recent if taken >= now - RECENT_SECONDS]
        reporting = sum(
            1 for d in devices if d.last_delivered_at is not None and d.last_delivered_at >= recent
        )
        return {
            "devices": len(devices),
            "enrolled": sum(d.enrolled for d in devices),
            "versions": dict(Counter(d.version for d in devices).most_common()),
            "deployments": dict(Counter(d.phase for d in devices).most_common()),
            "crash_free": round(statistics.fmean(s.crash_free for s in samples), 4) if samples else None,
            "boot_success": round(sum(s.boot_ok for s in samples) / len(samples), 4) if samples else None,
            "median_latency_ms": round(statistics.median(s.checkin_latency_ms for s in samples))
            if samples
            else None,
            "reporting": round(reporting / len(devices), 3) if devices else 0.0,
            "buffered": sum(len(d.buffer) for d in devices),
            "dropped": sum(d.dropped for d in devices),
        }

    def _cpu_percent(self) -> float:
        """The simulator's own CPU use since the previous status: a saturated event loop shows
        here before it shows as lag."""
        wall, cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu = self._cpu_mark
        self._cpu_mark = (wall, cpu)
        return round(100 * (cpu - last_cpu) / (wall - last_wall), 1) if wall > last_wall else 0.0

    def summary(self) -> dict:
        now = self.clock()
        return {
            "seed": self.seed,
            "devices": len(self.devices),
            "enrolled": sum(device.enrolled for device in self.devices),
            "buffered": sum(len(device.buffer) for device in self.devices),
            **self.metrics.summary(now),
        }
