"""Chaos of 001 on simulated devices: power loss, stuck download, clock skew, partition."""

import random

from simulator.chaos import ChaosKind, apply_chaos, clear_chaos, describe_chaos, pick_share
from simulator.device import Phase, parse_time
from tests.simulator.fakes import T0, FakeServer, advance, install, make_device, release, run

ARTIFACT = b"v2.1 image"


def armed_server() -> FakeServer:
    server = FakeServer()
    server.artifacts["v2.1"] = ARTIFACT
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT))
    return server


def test_it_reboots_on_the_old_version_when_power_fails_during_activation():
    server = armed_server()
    device = make_device(server)
    apply_chaos(ChaosKind.POWER_LOSS, [device], 1.0, rng=random.Random(1), now=T0)
    run(advance(device, T0 + 8))
    assert device.down_until > T0 + 8
    down_from = max(parse_time(c["timestamp"]) for c in server.checks_of("tv-0001"))
    reboot_ends = device.down_until
    assert server.states("tv-0001") == ["downloading", "verified"]

    run(advance(device, reboot_ends + 30))
    assert device.version == "v2.0"
    assert server.states("tv-0001") == ["downloading", "verified", "failed"]
    report = server.reports[-1][2]
    assert "Power lost while activating v2.1" in report["error"] and "v2.0" in report["error"]
    assert "falling back" in report["diagnostics"]
    # Silent while powered off, then reporting the old version.
    stamps = [parse_time(c["timestamp"]) for c in server.checks_of("tv-0001")]
    assert not [stamp for stamp in stamps if down_from < stamp < reboot_ends]
    assert {c["version"] for c in server.checks_of("tv-0001")} == {"v2.0"}
    # Power loss is a one-off; the device does not restart the failed rollout on its own.
    assert not device.power_loss_armed
    assert device.deployment.phase is Phase.FAILED
    assert server.count("/api/releases/v2.1/artifact") == 1


def test_it_stays_in_downloading_while_the_download_is_stuck():
    server = armed_server()
    device = make_device(server)
    apply_chaos(ChaosKind.STUCK_DOWNLOAD, [device], 1.0, rng=random.Random(1), now=T0)
    run(advance(device, T0 + 600))
    assert server.states("tv-0001") == ["downloading"]
    assert device.deployment.phase is Phase.DOWNLOADING
    assert device.version == "v2.0"
    # Health keeps flowing meanwhile.
    assert len(server.checks_of("tv-0001")) == 121
    clear_chaos([device], now=T0 + 600)
    run(advance(device, T0 + 620))
    assert server.states("tv-0001") == ["downloading", "verified", "activated"]


def test_it_sticks_a_download_already_under_way():
    server = armed_server()
    device = make_device(server)
    run(advance(device, T0))
    assert device.deployment.phase is Phase.DOWNLOADING
    apply_chaos(ChaosKind.STUCK_DOWNLOAD, [device], 1.0, rng=random.Random(1), now=T0)
    run(advance(device, T0 + 60))
    assert server.states("tv-0001") == ["downloading"]


def test_it_stamps_checks_with_the_skewed_clock():
    server = FakeServer()
    device = make_device(server)
    apply_chaos(ChaosKind.CLOCK_SKEW, [device], -3600.0, rng=random.Random(1), now=T0)
    run(advance(device, T0 + 10))
    stamps = [parse_time(c["timestamp"]) for c in server.checks_of("tv-0001")]
    assert stamps == [T0 - 3600, T0 - 3595, T0 - 3590]
    clear_chaos([device], now=T0 + 10)
    run(advance(device, T0 + 15))
    assert parse_time(server.checks_of("tv-0001")[-1]["timestamp"]) == T0 + 15


def test_it_buffers_during_a_partition_and_resyncs_through_batch_with_nothing_lost():
    server = FakeServer()
    device = make_device(server)
    run(advance(device, T0 + 10))
    requests_before = len(server.requests)
    apply_chaos(ChaosKind.PARTITION, [device], 60.0, rng=random.Random(1), now=T0 + 10)
    run(advance(device, T0 + 69))
    # Nothing reached the server during the partition; the checks wait in the buffer.
    assert len(server.requests) == requests_before
    assert len(device.buffer) == 11
    run(advance(device, T0 + 120))
    assert not device.buffer
    assert server.batch_calls >= 1
    stamps = [parse_time(c["timestamp"]) for c in server.checks_of("tv-0001")]
    assert stamps == [T0 + 5 * slot for slot in range(25)]
    assert server.duplicates == 0
    assert describe_chaos([device], now=T0 + 120)["partitioned"] == 0


def test_it_resyncs_promptly_when_a_partition_is_cleared_early():
    server = FakeServer()
    device = make_device(server)
    run(advance(device, T0))
    apply_chaos(ChaosKind.PARTITION, [device], 3600.0, rng=random.Random(1), now=T0)
    run(advance(device, T0 + 120))
    assert len(device.buffer) == 24
    clear_chaos([device], now=T0 + 120)
    run(advance(device, T0 + 125))
    assert not device.buffer
    assert len(server.checks_of("tv-0001")) == 26


def test_it_picks_the_same_share_of_devices_for_the_same_seed():
    server = FakeServer()
    devices = [make_device(server, device_id=f"tv-{index:04d}") for index in range(50)]
    first = pick_share(devices, 0.1, random.Random("42:chaos"))
    again = pick_share(list(reversed(devices)), 0.1, random.Random("42:chaos"))
    assert [d.device_id for d in first] == [d.device_id for d in again]
    assert len(first) == 5
    # A small share of a small ring still hits one device.
    assert len(pick_share(devices[:3], 0.01, random.Random(1))) == 1
    assert pick_share(devices, 0.0, random.Random(1)) == []


def test_it_clears_every_experiment():
    server = FakeServer()
    devices = [make_device(server, device_id=f"tv-{index:04d}") for index in range(4)]
    rng = random.Random(1)
    apply_chaos(ChaosKind.POWER_LOSS, devices[:1], 1.0, rng=rng, now=T0)
    apply_chaos(ChaosKind.STUCK_DOWNLOAD, devices[1:2], 1.0, rng=rng, now=T0)
    apply_chaos(ChaosKind.CLOCK_SKEW, devices[2:3], 30.0, rng=rng, now=T0)
    apply_chaos(ChaosKind.PARTITION, devices[3:], 30.0, rng=rng, now=T0)
    assert describe_chaos(devices, now=T0) == {
        "power_loss_armed": 1,
        "powered_off": 0,
        "stuck_downloads": 1,
        "clock_skewed": 1,
        "partitioned": 1,
    }
    assert clear_chaos(devices, now=T0) == 4
    assert set(describe_chaos(devices, now=T0).values()) == {0}
