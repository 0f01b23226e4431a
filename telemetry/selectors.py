"""Health aggregation (000 §6.4): windows cut on the server's receive time."""

import datetime as dt

from django.db.models import Avg, Count, FloatField, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from devices.models import Device
from rollouts.gates import RingHealth
from telemetry.models import HealthCheck


def window_start(window_minutes: int, now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()) - dt.timedelta(minutes=window_minutes)


def summarize(
    checks: QuerySet[HealthCheck], *, ring: str, window_minutes: int, expected_devices: int | None = None
) -> RingHealth:
    """Aggregate checks already cut to a window. An empty window gives the default healthy values
    with total_devices 0; the gate engine turns that into WAIT, never into PROMOTE."""
    totals = checks.aggregate(
        devices=Count("device_id", distinct=True),
        checks=Count("id"),
        crash_free=Avg("crash_free"),
        boot_ok=Avg(Cast("boot_ok", FloatField())),
        availability=Avg("availability"),
        dropped=Avg("dropped_events"),
        with_lag=Count("id", filter=Q(event_lag_ms__isnull=False)),
    )
    if not totals["checks"]:
        return RingHealth(ring=ring, window_minutes=window_minutes, expected_devices=expected_devices)
    return RingHealth(
        ring=ring,
        total_devices=totals["devices"],
        crash_free_rate=totals["crash_free"],
        boot_success_rate=totals["boot_ok"],
        median_latency_ms=_median(checks, "checkin_latency_ms", totals["checks"]),
        window_minutes=window_minutes,
        expected_devices=expected_devices,
        availability=totals["availability"],
        event_lag_ms=_median(checks.exclude(event_lag_ms=None), "event_lag_ms", totals["with_lag"])
        if totals["with_lag"]
        else None,
        dropped_events=totals["dropped"],
    )


def _median(checks: QuerySet[HealthCheck], field: str, count: int) -> float:
    """The median by offset into the sorted values: the same SQL on PostgreSQL and SQLite."""
    ordered = checks.order_by(field).values_list(field, flat=True)
    middle = count // 2
    if count % 2:
        return float(ordered[middle])
    low, high = ordered[middle - 1 : middle + 1]
    return (low + high) / 2


def ring_health(
    ring: str, *, window_minutes: int = 5, version: str | None = None, now: dt.datetime | None = None
) -> RingHealth:
    """Health of every device of a ring (optionally only checks reporting `version`)."""
    checks = HealthCheck.objects.filter(ring=ring, received_at__gte=window_start(window_minutes, now))
    devices = Device.objects.filter(ring=ring)
    if version:
        checks = checks.filter(version=version)
        devices = devices.filter(app_version=version)
    return summarize(checks, ring=ring, window_minutes=window_minutes, expected_devices=devices.count())
