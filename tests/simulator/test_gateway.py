"""Site gateways: the devices' checks go to the server in one batch per site per interval.

Fleets run in simulated time (ManualClock + advance) against the fake server, which accepts the
gateway's API token on the batch endpoint and the devices' own tokens everywhere else."""

import asyncio
import itertools
import random
from collections import Counter

import httpx
import pytest

from simulator.api import GatewayApi
from simulator.console import format_status
from simulator.device import parse_time
from simulator.fleet import Fleet, FleetConfig, ManualClock, device_ids
from simulator.gateway import TOKEN_REFUSED_WAIT_SECONDS, GatewaySettings, SiteGateway, rejections
from tests.simulator.fakes import (
    BASE_URL,
    GATEWAY_TOKEN,
    KEY,
    T0,
    FakeServer,
    install,
    make_device,
    release,
    run,
)


def gateway_fleet(server: FakeServer, *, devices: int = 50, per_site: int = 25, **config) -> Fleet:
    config.setdefault("gateway_token", GATEWAY_TOKEN)
    return Fleet(
        FleetConfig(
            api_url=BASE_URL, devices=devices, enrollment_key=KEY, seed=5, devices_per_site=per_site, **config
        ),
        transport=server.transport(),
        clock=ManualClock(T0),
    )


def site_of(fleet: Fleet) -> dict[str, str]:
    return {device.device_id: device.site for device in fleet.devices}


def slots_stored(server: FakeServer, device_id: str) -> list[float]:
    return [parse_time(check["timestamp"]) for check in server.checks_of(device_id)]


def assert_every_slot_stored_once(server: FakeServer, fleet: Fleet) -> None:
    for device in fleet.devices:
        stamps = slots_stored(server, device.device_id)
        assert len(stamps) == device.generated - len(device.buffer)
        assert stamps == sorted(set(stamps))
        assert all(round(b - a, 6) == 5.0 for a, b in itertools.pairwise(stamps))


def test_it_delivers_each_sites_checks_in_one_batch_per_interval():
    server = FakeServer()
    fleet = gateway_fleet(server, devices=50, per_site=25)
    run(fleet.advance(T0 + 60))

    sites = site_of(fleet)
    assert len(fleet.gateways) == 2
    # Every check went through a gateway; no device posted one itself.
    assert server.count("/api/health") == 0 and server.batch_calls == 0
    assert len(server.stored) == 50 * 12
    assert sum(len(device.buffer) for device in fleet.devices) == 0
    # One batch per site per interval, each holding only its own site's devices.
    assert len(server.gateway_batches) == 2 * 12
    for batch in server.gateway_batches:
        assert len({sites[device_id] for device_id in batch}) == 1
    assert Counter(len(batch) for batch in server.gateway_batches) == {25: 24}
    assert_every_slot_stored_once(server, fleet)
    status = fleet.status()
    assert status["delivery"] == {"mode": "gateway", "gateways": 2, "last_errors": []}
    assert status["batches"] == 24 and status["checks_per_batch"] == 25.0
    assert status["rings"]["pilot"]["reporting"] == 1.0
    assert "delivery: 2 site gateways" in format_status(status)


def test_it_keeps_the_devices_own_credentials_for_desired_state_and_deployment_steps():
    server = FakeServer()
    server.artifacts["v2.1"] = b"image"
    fleet = gateway_fleet(server, devices=4)
    for device_id in device_ids("tv", 4):
        server.desired[device_id] = install("r1", release("v2.1", b"image"))
    run(fleet.advance(T0 + 30))

    assert all(
        server.states(device_id, "r1") == ["downloading", "verified", "activated"]
        for device_id in device_ids("tv", 4)
    )
    assert server.count("/api/device/desired-state") >= 4
    assert {check["version"] for check in server.checks_of("tv-0001")} == {"v2.0", "v2.1"}


def test_it_settles_a_partial_rejection_and_never_sends_a_refused_check_again():
    server = FakeServer(refused_devices={"tv-0002"})
    fleet = gateway_fleet(server, devices=5)
    run(fleet.advance(T0 + 30))

    refused = fleet.devices[1]
    assert refused.device_id == "tv-0002"
    assert server.checks_of("tv-0002") == []
    assert refused.generated == 6 and refused.rejected == 6 and not refused.buffer
    # Sent once each: the refused device's checks appear in exactly as many batches as it took.
    assert sum(batch.count("tv-0002") for batch in server.gateway_batches) == 6
    others = [device for device in fleet.devices if device is not refused]
    assert all(len(server.checks_of(device.device_id)) == device.generated == 6 for device in others)
    status = fleet.status()
    assert status["checks_rejected"] == 6 and status["checks_delivered"] == 4 * 6
    assert status["rings"]["pilot"]["reporting"] == 0.8


def test_it_buffers_on_the_devices_while_the_server_is_down_and_catches_up_once_back():
    server = FakeServer(batch_limit=40)
    fleet = gateway_fleet(server, devices=10, gateway_batch_size=40)
    run(fleet.advance(T0 + 10))
    server.down_status, server.retry_after = 503, "5"
    run(fleet.advance(T0 + 70))

    gateway = fleet.gateways[0]
    assert gateway.backoff.failures >= 3 and gateway.last_error == "HTTP 503"
    waiting = sum(len(device.buffer) for device in fleet.devices)
    assert waiting >= 10 * 11
    assert fleet.status()["delivery"]["last_errors"] == ["HTTP 503"]

    server.down_status = None
    run(fleet.advance(T0 + 90))
    # Back within a retry or two, the backlog sent in full batches of 40 in a row.
    assert sum(len(device.buffer) for device in fleet.devices) == 0
    assert server.duplicates == 0
    assert max(len(batch) for batch in server.gateway_batches) == 40
    assert_every_slot_stored_once(server, fleet)
    assert len(server.stored) == sum(device.generated for device in fleet.devices)
    assert gateway.last_error is None


def test_it_resends_a_batch_whose_answer_was_lost_and_the_server_counts_it_once():
    server = FakeServer(lose_batch_answers=1)
    fleet = gateway_fleet(server, devices=5)
    run(fleet.advance(T0 + 30))

    assert sum(len(device.buffer) for device in fleet.devices) == 0
    assert server.duplicates == 5
    assert fleet.status()["checks_duplicate"] == 5
    assert_every_slot_stored_once(server, fleet)


def test_it_halves_its_batches_when_the_server_says_they_are_too_large():
    server = FakeServer(batch_limit=8)
    fleet = gateway_fleet(server, devices=20, per_site=20)
    run(fleet.advance(T0 + 20))

    gateway = fleet.gateways[0]
    assert gateway.batch_size <= 8
    assert sum(len(device.buffer) for device in fleet.devices) == 0
    assert fleet.status()["checks_rejected"] == 0
    assert_every_slot_stored_once(server, fleet)


def test_it_waits_a_minute_when_the_gateway_token_is_refused_and_keeps_every_check():
    server = FakeServer()
    fleet = gateway_fleet(server, devices=5, gateway_token="revoked")
    run(fleet.advance(T0 + 30))

    gateway = fleet.gateways[0]
    assert server.stored == {}
    assert (
        T0 + 5 + TOKEN_REFUSED_WAIT_SECONDS <= gateway.retry_at <= T0 + 5 + 1.2 * TOKEN_REFUSED_WAIT_SECONDS
    )
    assert all(len(device.buffer) == device.generated >= 6 for device in fleet.devices)
    assert fleet.status()["failures"]["gateway HTTP 401"] == 1
    # Only one attempt in the 30 s: a refused token does not turn into a request loop.
    assert server.count("/api/health/batch") == 1


def test_it_leaves_the_checks_of_partitioned_devices_on_them_until_they_are_back():
    server = FakeServer()
    fleet = gateway_fleet(server, devices=10, rings={"pilot": 50, "ring_5": 50})
    run(fleet.advance(T0 + 10))
    assert fleet.chaos("partition", "ring_5", 60) == 5
    run(fleet.advance(T0 + 40))

    rings = fleet.status()["rings"]
    assert rings["ring_5"]["buffered"] >= 5 * 6 and rings["ring_5"]["reporting"] == 0.0
    assert rings["pilot"]["buffered"] <= 5 and rings["pilot"]["reporting"] == 1.0
    fleet.clear()
    run(fleet.advance(T0 + 50))
    assert fleet.status()["rings"]["ring_5"]["buffered"] <= 5
    assert server.duplicates == 0
    assert_every_slot_stored_once(server, fleet)


def test_it_never_sends_a_check_twice_while_a_slow_batch_is_in_flight():
    server = FakeServer()
    device = make_device(server)
    device.settings = type(device.settings)(via_gateway=True)
    run(device.tick(T0))
    gateway = SiteGateway(
        "site-001",
        [device],
        api=GatewayApi(server.client(), token=GATEWAY_TOKEN),
        rng=random.Random(1),
        first_flush=T0,
        settings=GatewaySettings(interval=5.0),
    )

    async def scenario():
        answer = asyncio.Event()
        plain = server.handle

        async def slow(request):
            # The server sits on the batch until the test lets it answer.
            await answer.wait()
            return plain(request)

        gateway.api.client._transport = httpx.MockTransport(slow)
        in_flight = asyncio.create_task(gateway.flush(T0))
        await asyncio.sleep(0)
        # Two more checks are taken while the first batch hangs.
        device.local_step(T0 + 5)
        device.local_step(T0 + 10)
        assert len(device.buffer) == 3
        answer.set()
        await in_flight
        assert len(device.buffer) == 2
        await gateway.flush(T0 + 10)

    run(scenario())
    assert not device.buffer
    assert server.gateway_batches == [["tv-0001"], ["tv-0001", "tv-0001"]]
    assert slots_stored(server, "tv-0001") == [T0, T0 + 5, T0 + 10]
    assert server.duplicates == 0


def test_it_takes_buffered_checks_round_robin_so_no_device_crowds_out_the_others():
    server = FakeServer()
    devices = [make_device(server, device_id=f"tv-000{n}") for n in (1, 2, 3)]
    for device in devices:
        device.known = True
    for n in range(10):
        devices[0].buffer.append({"device_id": "tv-0001", "n": n})
    devices[1].buffer.append({"device_id": "tv-0002", "n": 0})
    devices[2].buffer.extend({"device_id": "tv-0003", "n": n} for n in range(2))
    gateway = SiteGateway(
        "site-001",
        devices,
        api=GatewayApi(server.client(), token=GATEWAY_TOKEN),
        rng=random.Random(1),
        first_flush=T0,
        settings=GatewaySettings(batch_size=5),
    )

    batch = [(device.device_id, check["n"]) for device, check in gateway.collect(T0)]

    assert batch == [("tv-0001", 0), ("tv-0002", 0), ("tv-0003", 0), ("tv-0001", 1), ("tv-0003", 1)]


def test_it_reads_the_servers_rejections_by_index():
    body = {
        "rejected": [{"index": 2, "device_id": "tv-9", "errors": {"crash_free": ["bad"]}}, {"index": "x"}]
    }
    assert rejections(body) == {2: "tv-9: {'crash_free': ['bad']}"}
    assert rejections("not json") == {} and rejections({"rejected": None}) == {}


def test_it_spreads_the_desired_state_reads_when_asked_to():
    server = FakeServer()
    fleet = gateway_fleet(server, devices=40, checkin_interval=30.0, checkin_jitter=0.2)
    run(fleet.advance(T0 + 5))
    # All enrolled within the first interval, but their first reads come anywhere within the next
    # 30 s, not all at once as without jitter.
    assert sum(device.enrolled for device in fleet.devices) == 40
    assert server.count("/api/device/desired-state") < 10
    run(fleet.advance(T0 + 35))
    # Each has read once; only those that read early have read again (24–36 s later).
    assert 40 <= server.count("/api/device/desired-state") < 60
    assert all(T0 + 35 < device.next_checkin_at <= T0 + 35 + 36 for device in fleet.devices)


@pytest.mark.parametrize("jitter", [0.0, 0.2])
def test_it_keeps_the_checkin_interval_within_its_jitter(jitter):
    server = FakeServer()
    device = make_device(server)
    device.settings = type(device.settings)(checkin_interval=30.0, checkin_jitter=jitter)
    delays = [device.checkin_delay() for _ in range(200)]
    assert min(delays) >= 30 * (1 - jitter) and max(delays) <= 30 * (1 + jitter)
    assert (max(delays) - min(delays) > 5) is (jitter > 0)


def test_it_delivers_what_the_devices_still_hold_when_it_stops():
    server = FakeServer()
    fleet = gateway_fleet(server, devices=10)
    run(fleet.advance(T0 + 12))
    held = sum(len(device.buffer) for device in fleet.devices)
    assert held > 0

    summary = run(fleet.stop(final_delivery_seconds=5.0))

    assert summary["buffered"] == 0
    assert len(server.stored) == summary["checks_generated"] == summary["checks_delivered"]


def test_the_checks_a_gateway_delivers_carry_the_devices_custom_kpis():
    server = FakeServer()
    fleet = gateway_fleet(server, devices=4)
    run(fleet.advance(T0 + 20))

    assert server.stored
    assert all("crash_loops" in check["metrics"] for check in server.stored.values())
