"""The rollups against the raw checks they sum.

Random checks go in through ingestion (single and batch, with retries); every window read from
the rollups must equal the same window aggregated here, in plain Python, from the raw rows.
tests/telemetry/test_rollups.py runs it on PostgreSQL in-process and on SQLite, the embedded
default, in a subprocess:

    SAFEROLL_STATE_DIR=/tmp/x python -m tests.telemetry.rollup_equivalence SEED [SEED ...]
"""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

RINGS = ("pilot", "ring_5", "ring_25")
WINDOWS = (1, 5, 12)
SERIES_MINUTES = 40


@dataclass(frozen=True)
class World:
    now: dt.datetime
    rollout_id: int
    version: str
    # (device pk, stage) → when the stage targeted the device.
    targeted: dict[int, tuple[str, dt.datetime]]


def build(seed: int) -> World:
    """Devices on v1 reporting for half an hour; a rollout of v2 targets two stages (one named
    after no ring), the targeted devices move to v2 a little later; some checks are retried."""
    from django.utils import timezone

    from rollouts.models import DeviceDeployment
    from telemetry.services import HealthReport, health_ingest, health_ingest_batch
    from tests.factories import DeviceFactory, RolloutFactory

    rng = random.Random(seed)
    start = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=35)
    devices = [DeviceFactory(ring=rng.choice(RINGS), app_version="v1") for _ in range(rng.randint(20, 40))]
    rollout = RolloutFactory()
    version = rollout.release.version
    targeted: dict[int, tuple[str, dt.datetime]] = {}
    for device in devices:
        if rng.random() < 0.5:
            stage = "canary" if device.ring == "ring_25" else device.ring
            at = start + dt.timedelta(minutes=rng.uniform(5, 25))
            deployment = DeviceDeployment.objects.create(rollout=rollout, device=device, ring=stage)
            DeviceDeployment.objects.filter(pk=deployment.pk).update(created_at=at)
            targeted[device.pk] = (stage, at)

    now = start
    sent: list[tuple] = []
    for _ in range(rng.randint(150, 250)):
        now += dt.timedelta(seconds=rng.uniform(1, 15))
        batch = []
        for device in rng.sample(devices, rng.randint(1, min(8, len(devices)))):
            if sent and rng.random() < 0.1:
                batch.append(rng.choice(sent))  # a retry of a check already sent
                continue
            on_release = device.pk in targeted and now > targeted[device.pk][1] + dt.timedelta(seconds=30)
            report = HealthReport(
                boot_ok=rng.random() > 0.1,
                crash_free=round(rng.uniform(0.9, 1.0), 4),
                checkin_latency_ms=rng.randint(20, 80),
                version=version if on_release else "v1",
                timestamp=now - dt.timedelta(milliseconds=rng.randint(0, 900)),
                availability=rng.choice([None, round(rng.uniform(0.95, 1), 3)]),
                event_lag_ms=rng.choice([None, rng.randint(10, 500)]),
                dropped_events=rng.choice([None, rng.randint(0, 5)]),
                metrics=rng.choice([{}, {"fps": round(rng.uniform(20, 60), 1)}]),
            )
            batch.append((device, report))
            sent.append((device, report))
        if len(batch) == 1:
            health_ingest(device=batch[0][0], report=batch[0][1], now=now)
        else:
            health_ingest_batch(checks=batch, now=now)
    return World(now=now, rollout_id=rollout.pk, version=version, targeted=targeted)


# --- the reference: plain Python over the raw rows ---


def raw_health(checks: list, ring: str, window_minutes: int) -> dict:
    if not checks:
        return {"ring": ring, "total_devices": 0, "checks": None, "crash_free_rate": 1.0, "boot_success_rate": 1.0,
                "median_latency_ms": 0, "availability": None, "event_lag_ms": None, "dropped_events": None,
                "metrics": {}}  # fmt: skip
    lags = [check.event_lag_ms for check in checks if check.event_lag_ms is not None]
    fps = [check.metrics["fps"] for check in checks if "fps" in check.metrics]
    return {
        "ring": ring,
        "total_devices": len({check.device_id for check in checks}),
        "checks": len(checks),
        "crash_free_rate": statistics.fmean(check.crash_free for check in checks),
        "boot_success_rate": sum(check.boot_ok for check in checks) / len(checks),
        "median_latency_ms": statistics.median(check.checkin_latency_ms for check in checks),
        "availability": _mean_or_none([c.availability for c in checks if c.availability is not None]),
        "event_lag_ms": statistics.median(lags) if lags else None,
        "dropped_events": _mean_or_none([c.dropped_events for c in checks if c.dropped_events is not None]),
        "metrics": {"fps": statistics.fmean(fps)} if fps else {},
    }


def raw_spread(checks: list) -> dict:
    """Each device's means over its checks of each minute, then their mean and sample variance,
    with the number of distinct devices."""
    from telemetry.rollups import minute_of

    by_device_minute: dict[tuple, list] = {}
    for check in checks:
        by_device_minute.setdefault((check.device_id, minute_of(check.received_at)), []).append(check)
    crash = [1 - statistics.fmean(c.crash_free for c in group) for group in by_device_minute.values()]
    latency = [statistics.fmean(c.checkin_latency_ms for c in group) for group in by_device_minute.values()]
    return {
        "devices": len({check.device_id for check in checks}),
        "crash_rate_mean": statistics.fmean(crash),
        "crash_rate_var": statistics.variance(crash) if len(crash) > 1 else 0.0,
        "latency_mean": statistics.fmean(latency),
        "latency_var": statistics.variance(latency) if len(latency) > 1 else 0.0,
    }


def _mean_or_none(values: list) -> float | None:
    return statistics.fmean(values) if values else None


def _figures(health) -> dict:
    data = health.to_dict()
    return {key: data[key] for key in raw_health([], "", 0)}


def differences(world: World) -> list[str]:
    """Every figure the rollups give that differs from the raw aggregate, as a sentence."""
    from telemetry.models import HealthCheck
    from telemetry.rollups import minute_of
    from telemetry.selectors import (
        critically_unhealthy_devices,
        previous_release_health,
        ring_health,
        ring_series,
        rollout_health,
        rollout_series,
        window_start,
    )

    checks = list(HealthCheck.objects.all())
    found: list[str] = []

    def compare(label: str, ours: dict, theirs: dict) -> None:
        for key, value in theirs.items():
            if not _same(ours[key], value):
                found.append(f"{label} {key}: rollups {ours[key]!r}, raw {value!r}")

    def window(minutes: int, keep: Callable) -> list:
        start = window_start(minutes, world.now)
        return [c for c in checks if start <= c.received_at <= world.now and keep(c)]

    def targeted_by(stage: str) -> Callable:
        def keep(check) -> bool:
            targeting = world.targeted.get(check.device_id)
            return (
                check.version == world.version
                and targeting is not None
                and targeting[0] == stage
                and targeting[1] <= check.received_at
            )

        return keep

    stages = sorted({stage for stage, _ in world.targeted.values()})
    for minutes in WINDOWS:
        for ring in RINGS:
            for version in (None, "v1", world.version):
                ours = ring_health(
                    ring, window_minutes=minutes, version=version, now=world.now, metrics=["fps"]
                )
                keep = lambda c, r=ring, v=version: c.ring == r and v in (None, c.version)  # noqa: E731
                compare(
                    f"ring {ring} {version} {minutes} min",
                    _figures(ours),
                    raw_health(window(minutes, keep), ring, minutes),
                )
        for stage in stages:
            ours = rollout_health(rollout_id=world.rollout_id, stage=stage, version=world.version,
                                  window_minutes=minutes, expected_devices=0, now=world.now, spread=True,
                                  metrics=["fps"])  # fmt: skip
            theirs = window(minutes, targeted_by(stage))
            compare(f"stage {stage} {minutes} min", _figures(ours), raw_health(theirs, stage, minutes))
            if theirs:
                compare(f"stage {stage} {minutes} min spread", ours.to_dict()["spread"], raw_spread(theirs))

    def compare_fleet(minutes: int) -> None:
        """The baseline across the fleet (every check off the release; a device counts where its
        newest check is) and the fleet's critically unhealthy devices."""
        start = window_start(minutes, world.now)
        newest = {}
        for check in sorted(checks, key=lambda c: c.received_at):
            newest[check.device_id] = check
        ours = previous_release_health(version=world.version, heard_within_minutes=10, window_minutes=minutes,
                                       now=world.now, spread=True, metrics=["fps"])  # fmt: skip
        theirs = window(minutes, lambda c: c.version != world.version)
        expected = raw_health(theirs, "baseline", minutes)
        expected["total_devices"] = sum(
            c.version != world.version and c.received_at >= start for c in newest.values()
        )
        compare(f"baseline {minutes} min", _figures(ours), expected)
        heard_since = window_start(10, world.now)
        heard = sum(c.version != world.version and c.received_at >= heard_since for c in newest.values())
        compare(f"baseline {minutes} min", {"expected": ours.expected_devices}, {"expected": heard})
        if theirs:
            spread = raw_spread(theirs) | {"devices": expected["total_devices"]}
            compare(f"baseline {minutes} min spread", ours.to_dict()["spread"], spread)
        # Each device judged on its checks of its newest minute (all of one version in this data).
        critical = 0
        for last in newest.values():
            if last.received_at < start:
                continue
            own = [c for c in checks if c.device_id == last.device_id and c.version == last.version
                   and minute_of(c.received_at) == minute_of(last.received_at)]  # fmt: skip
            booted = sum(c.boot_ok for c in own) / len(own)
            critical += statistics.fmean(c.crash_free for c in own) < 0.95 or booted < 0.97
        reporting = sum(last.received_at >= start for last in newest.values())
        counted = critically_unhealthy_devices(window_minutes=minutes, now=world.now)
        compare(f"fleet {minutes} min", {"counts": counted}, {"counts": (reporting, critical)})

    for minutes in WINDOWS:
        compare_fleet(minutes)

    def series(points, keep: Callable, label: str) -> None:
        for point in points:
            minute = [c for c in checks if minute_of(c.received_at) == point.minute and keep(c)]
            expected = raw_health(minute, "", 1)
            ours = {
                "total_devices": point.total_devices,
                "crash_free_rate": point.crash_free_rate if minute else 1.0,
                "boot_success_rate": point.boot_success_rate if minute else 1.0,
                "median_latency_ms": point.median_latency_ms if minute else 0,
                "metrics": point.metrics,
            }
            compare(f"{label} {point.minute:%H:%M}", ours, {key: expected[key] for key in ours})

    for ring in RINGS:
        for version in (None, world.version):
            points = ring_series(
                ring=ring, version=version, minutes=SERIES_MINUTES, now=world.now, metrics=["fps"]
            )
            series(
                points,
                lambda c, r=ring, v=version: c.ring == r and v in (None, c.version),
                f"series {ring} {version}",
            )
    for stage in [None, *stages]:
        points = rollout_series(rollout_id=world.rollout_id, stage=stage, version=world.version,
                                minutes=SERIES_MINUTES, now=world.now, metrics=["fps"])  # fmt: skip
        keep = targeted_by(stage) if stage else (lambda c: any(targeted_by(s)(c) for s in stages))
        series(points, keep, f"rollout series {stage}")
    return found


def _same(ours, theirs) -> bool:
    if isinstance(theirs, float) and ours is not None:
        return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(_same(ours[key], theirs[key]) for key in theirs)
    return ours == theirs


def main(seeds: list[int]) -> int:
    """On the configured database (the embedded SQLite when DATABASE_URL is unset): migrate, then
    check each seed in a transaction that is rolled back."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    call_command("migrate", verbosity=0)
    failures = 0
    for seed in seeds:
        with transaction.atomic():
            found = differences(build(seed))
            transaction.set_rollback(True)
        for line in found:
            print(f"seed {seed}: {line}")
        failures += bool(found)
    print(f"{len(seeds) - failures} of {len(seeds)} seeds equal")
    return 1 if failures else 0


if __name__ == "__main__":
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saferoll.settings")
    sys.exit(main([int(seed) for seed in sys.argv[1:]] or [1]))
