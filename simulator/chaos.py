"""Chaos experiments of 001 ("failure testing is mandatory"), applied to simulated devices.

    power-loss RING SHARE      that share of the ring loses power at its next activation: it reboots
                               (10–30 s of silence) on the old version and reports the deployment
                               failed, with the boot log as diagnostics.
    stuck-download RING SHARE  that share's downloads never complete: the deployment stays in
                               downloading until the server's step timeout fails it, or `clear`.
    clock-skew RING SECONDS    every device of the ring stamps its checks SECONDS off (either sign);
                               the server windows on receive time, so they must still count.
    partition RING SECONDS     every device of the ring loses the server for SECONDS: checks are
                               buffered (bounded) and resynced through /api/health/batch after.

Shares pick devices with the fleet's seeded generator, so a run with --seed hits the same devices.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from enum import StrEnum

from simulator.device import SimDevice


class ChaosKind(StrEnum):
    POWER_LOSS = "power-loss"
    STUCK_DOWNLOAD = "stuck-download"
    CLOCK_SKEW = "clock-skew"
    PARTITION = "partition"


# Kinds whose value is a share of the ring's devices; the others take seconds.
SHARE_KINDS = (ChaosKind.POWER_LOSS, ChaosKind.STUCK_DOWNLOAD)


def pick_share(devices: Sequence[SimDevice], share: float, rng: random.Random) -> list[SimDevice]:
    """Round up, so a small share of a small ring still hits at least one device."""
    count = min(len(devices), math.ceil(share * len(devices) - 1e-9))
    ordered = sorted(devices, key=lambda device: device.device_id)
    return rng.sample(ordered, count)


def apply_chaos(
    kind: ChaosKind, devices: Sequence[SimDevice], value: float, *, rng: random.Random, now: float
) -> int:
    """Apply one experiment to the ring's devices; returns how many devices it affects."""
    if kind is ChaosKind.POWER_LOSS:
        chosen = pick_share(devices, value, rng)
        for device in chosen:
            device.power_loss_armed = True
        return len(chosen)
    if kind is ChaosKind.STUCK_DOWNLOAD:
        chosen = pick_share(devices, value, rng)
        for device in chosen:
            device.stick()
        return len(chosen)
    if kind is ChaosKind.CLOCK_SKEW:
        for device in devices:
            device.clock_skew = value
        return len(devices)
    for device in devices:
        device.partition_until = max(device.partition_until, now + value)
    return len(devices)


def clear_chaos(devices: Sequence[SimDevice], *, now: float) -> int:
    """End every experiment at once; returns how many devices had one. A partitioned device
    resyncs at its next retry; a powered-off device still finishes its reboot."""
    affected = 0
    for device in devices:
        touched = (
            device.power_loss_armed
            or device.stuck_download
            or device.clock_skew != 0.0
            or device.partition_until > now
        )
        device.power_loss_armed = False
        device.clock_skew = 0.0
        if device.partition_until > now:
            device.partition_until = now
            # Come back promptly rather than after the remaining backoff.
            device.retry_at = min(device.retry_at, now)
        if device.stuck_download:
            device.unstick(now)
        affected += int(touched)
    return affected


def describe_chaos(devices: Sequence[SimDevice], *, now: float) -> dict[str, int]:
    """How many devices each experiment currently holds."""
    return {
        "power_loss_armed": sum(device.power_loss_armed for device in devices),
        "powered_off": sum(device.down_until > now for device in devices),
        "stuck_downloads": sum(device.stuck_download for device in devices),
        "clock_skewed": sum(device.clock_skew != 0.0 for device in devices),
        "partitioned": sum(device.partition_until > now for device in devices),
    }
