"""The fleet as a library: ring sizing, scheduling, faults and chaos by ring, status, determinism.

Fleets here run in simulated time (ManualClock + advance) against the fake server; one test
starts and stops the real-clock loop without waiting on it."""

import asyncio
from collections import Counter

import pytest

from simulator.chaos import ChaosKind
from simulator.fleet import Fleet, FleetConfig, ManualClock, assign_rings, device_ids, parse_rings
from simulator.health import Pattern
from tests.simulator.fakes import BASE_URL, KEY, T0, FakeServer, install, release, run

DEMO_RINGS = {"pilot": 10, "ring_5": 5, "ring_25": 25, "ring_100": 60}


def make_fleet(server: FakeServer, *, devices: int = 20, seed: int = 42, **config) -> Fleet:
    return Fleet(
        FleetConfig(api_url=BASE_URL, devices=devices, enrollment_key=KEY, seed=seed, **config),
        transport=server.transport(),
        clock=ManualClock(T0),
    )


def test_it_sizes_the_demo_rings_as_000_8_2():
    rings = assign_rings(1000, DEMO_RINGS)
    assert Counter(rings) == {"pilot": 100, "ring_5": 50, "ring_25": 250, "ring_100": 600}
    assert rings[:100] == ["pilot"] * 100
    assert Counter(assign_rings(7, {"a": 1, "b": 1})) == {"a": 4, "b": 3}


def test_it_reads_ring_shares_and_refuses_malformed_ones():
    assert parse_rings("pilot:10,ring_5:5") == {"pilot": 10.0, "ring_5": 5.0}
    for bad in ("pilot", "pilot:x", "pilot:-1", "pilot:0", ":5"):
        with pytest.raises(ValueError):
            parse_rings(bad)


def test_it_numbers_devices_with_the_prefix():
    assert device_ids("tv", 3) == ["tv-0001", "tv-0002", "tv-0003"]
    assert device_ids("kiosk", 12000)[-1] == "kiosk-12000"


def test_it_spreads_the_first_ticks_over_one_interval():
    fleet = make_fleet(FakeServer(), devices=100, interval=5.0)
    fleet.build()
    firsts = sorted(device.next_due() - T0 for device in fleet.devices)
    assert 0 <= firsts[0] < 0.05 and 4.95 <= firsts[-1] < 5.0
    # Evenly: every half second of the interval gets a tenth of the devices.
    assert all(count == 10 for count in Counter(int(first * 2) for first in firsts).values())


def test_it_runs_every_device_on_schedule_in_simulated_time():
    server = FakeServer()
    fleet = make_fleet(server, devices=20)
    run(fleet.advance(T0 + 60))
    status = fleet.status()
    assert status["enrolled"] == 20
    assert len(server.stored) == 20 * 12
    assert status["target_per_s"] == 4.0
    assert status["generated_per_s"] == pytest.approx(4.0, abs=0.3)
    assert status["delivered_per_s"] == pytest.approx(4.0, abs=0.3)
    assert status["lag_ms"]["max"] == 0
    assert status["rings"]["pilot"]["devices"] == 20
    assert status["rings"]["pilot"]["reporting"] == 1.0


def test_it_enrolls_devices_with_a_variant_a_site_a_region_and_its_version():
    server = FakeServer()
    fleet = make_fleet(server, devices=30)
    run(fleet.advance(T0 + 5))
    first, second, last = (
        server.enrolled_as["tv-0001"],
        server.enrolled_as["tv-0002"],
        server.enrolled_as["tv-0030"],
    )
    assert first == {
        "device_id": "tv-0001",
        "enrollment_key": KEY,
        "version": "v2.0",
        "variant": "tv-32-gen2",
        "site": "site-001",
        "region": "north",
    }
    assert second["variant"] == "tv-43-gen3"
    assert (last["site"], last["region"]) == ("site-002", "south")
    assert "ring" not in first


def test_it_assigns_rings_itself_when_asked_and_injects_by_ring():
    server = FakeServer()
    fleet = make_fleet(server, devices=20, rings={"pilot": 50, "ring_5": 50})
    run(fleet.advance(T0 + 30))
    assert Counter(server.rings.values()) == {"pilot": 10, "ring_5": 10}
    fleet.inject(0.3, ring="ring_5")
    # Status averages the last minute of checks.
    run(fleet.advance(T0 + 95))
    rings = fleet.status()["rings"]
    assert rings["ring_5"]["crash_free"] < 0.72
    assert rings["pilot"]["crash_free"] > 0.98
    assert fleet.status()["faults"] == ["ring ring_5: rate 0.3 immediate (for 65 s)"]
    fleet.clear()
    run(fleet.advance(T0 + 160))
    assert fleet.status()["rings"]["ring_5"]["crash_free"] > 0.98


def test_it_injects_by_version_so_that_rolling_back_cures_the_devices():
    server = FakeServer()
    server.artifacts["v2.1"] = b"image"
    fleet = make_fleet(server, devices=10)
    for device_id in device_ids("tv", 10):
        server.desired[device_id] = install("r1", release("v2.1", b"image"))
    fleet.inject(0.5, version="v2.1")
    run(fleet.advance(T0 + 40))
    assert fleet.status()["rings"]["pilot"]["versions"] == {"v2.1": 10}
    assert fleet.status()["rings"]["pilot"]["crash_free"] < 0.6
    for device_id in device_ids("tv", 10):
        server.desired[device_id] = {
            "action": "rollback",
            "rollout_id": "r1",
            "release": release("v2.0", b""),
        }
    # Rolled back within seconds; status averages the last minute of checks.
    run(fleet.advance(T0 + 120))
    pilot = fleet.status()["rings"]["pilot"]
    assert pilot["versions"] == {"v2.0": 10}
    assert pilot["deployments"] == {"rolled_back": 10}
    assert pilot["crash_free"] > 0.98


def test_it_gives_the_same_devices_the_same_health_under_the_same_seed():
    def stored(seed: int) -> list:
        server = FakeServer()
        fleet = make_fleet(server, devices=5, seed=seed)
        fleet.inject(0.02, ring="pilot", pattern=Pattern.GRADUAL)
        run(fleet.advance(T0 + 120))
        return sorted((key, check["crash_free"], check["boot_ok"]) for key, check in server.stored.items())

    assert stored(7) == stored(7)
    assert stored(7) != stored(8)


def test_it_runs_chaos_on_a_ring_and_clears_it():
    server = FakeServer()
    fleet = make_fleet(server, devices=10)
    run(fleet.advance(T0 + 10))
    assert fleet.chaos(ChaosKind.PARTITION, "pilot", 120) == 10
    assert fleet.chaos(ChaosKind.POWER_LOSS, "pilot", 0.3) == 3
    assert fleet.chaos("clock-skew", "nowhere", 5) == 0
    run(fleet.advance(T0 + 60))
    status = fleet.status()
    assert status["chaos"]["partitioned"] == 10 and status["chaos"]["power_loss_armed"] == 3
    assert status["rings"]["pilot"]["buffered"] == 100
    assert status["rings"]["pilot"]["reporting"] == 0.0
    assert fleet.clear() == {"faults": 0, "chaos_devices": 10}
    run(fleet.advance(T0 + 70))
    assert fleet.status()["rings"]["pilot"]["buffered"] == 0
    # Every slot of the 70 s (14 per device) arrived, the partitioned ones through batches.
    assert len(server.stored) == 10 * 14


def test_it_counts_network_pattern_silence_as_not_reporting():
    server = FakeServer()
    fleet = make_fleet(server, devices=40)
    fleet.inject(0.0, ring="pilot", pattern="network")
    run(fleet.advance(T0 + 240))
    pilot = fleet.status()["rings"]["pilot"]
    assert pilot["median_latency_ms"] > 1500
    assert 0.25 <= pilot["reporting"] <= 0.55
    assert pilot["buffered"] > 0
    fleet.clear()
    run(fleet.advance(T0 + 270))
    assert fleet.status()["rings"]["pilot"]["buffered"] == 0
    assert len(server.stored) == 40 * 54


def test_it_refuses_to_advance_on_the_real_clock():
    fleet = Fleet(FleetConfig(api_url=BASE_URL, devices=1))
    with pytest.raises(TypeError):
        run(fleet.advance(T0))


def test_it_starts_and_stops_cleanly_on_the_real_clock():
    server = FakeServer()

    async def scenario():
        fleet = Fleet(
            FleetConfig(api_url=BASE_URL, devices=3, interval=3600, enrollment_key=KEY, seed=1),
            transport=server.transport(),
        )
        await fleet.start()
        assert fleet.running and len(fleet._tasks) == 3
        tasks = list(fleet._tasks)
        # Yield so every device loop is running (and asleep until its first tick) when stopped.
        for _ in range(5):
            await asyncio.sleep(0)
        summary = await fleet.stop()
        assert all(task.done() for task in tasks)
        assert not fleet.running and fleet._client is None
        return summary

    summary = run(scenario())
    assert summary["devices"] == 3 and summary["checks_generated"] == 0
