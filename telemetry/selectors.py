"""Health aggregation (000 §6.4): windows cut on the server's receive time, on whole minutes.

Rings, rollout stages, the fleet and a large stage's baseline are read from the per-minute rollups
(telemetry.rollups), whatever the number of checks. Raw checks are read for one device and for a
small stage's baseline at its own sites. There PostgreSQL computes medians in the aggregate
query itself (percentile_cont); SQLite, the embedded default, has no ordered-set aggregates, so
the median is read by offset into sorted values.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Count,
    Exists,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Variance,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, TruncMinute
from django.utils import timezone

from devices.models import Device
from telemetry.health import DeviceSpread, RingHealth
from telemetry.models import (
    DeviceCheckState,
    HealthCheck,
    HealthGroup,
    HealthMinute,
    HealthMinuteMetric,
    HealthMinuteValue,
)
from telemetry.rollups import minute_of


class Median(Aggregate):
    """The continuous median (PostgreSQL only); NULLs are ignored like in any aggregate."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _has_median() -> bool:
    return connection.vendor == "postgresql"


def window_start(window_minutes: int, now: dt.datetime) -> dt.datetime:
    """Where a window of `window_minutes` ending at `now` starts: on the whole minute that holds
    the moment `window_minutes` before now, because the rollups sum checks by minute. A window
    therefore covers between `window_minutes` and one minute more, the same for every reader."""
    return minute_of(now - dt.timedelta(minutes=window_minutes))


def _metric_aggregates(names: Sequence[str]) -> dict[str, Avg]:
    """The mean of each custom metric over the checks that carry it: `(metrics->>'name')::float`
    on PostgreSQL, json_extract on SQLite; a check without the key gives NULL, which AVG skips.
    Aliased by position, so a metric's name never has to be a valid SQL alias."""
    return {
        f"metric_{index}": Avg(Cast(KeyTextTransform(name, "metrics"), FloatField()))
        for index, name in enumerate(names)
    }


def _metric_means(row: dict[str, Any], names: Sequence[str]) -> dict[str, float]:
    """The means of an aggregate row by metric name, leaving out those nobody reported."""
    means = {name: row[f"metric_{index}"] for index, name in enumerate(names)}
    return {name: float(mean) for name, mean in means.items() if mean is not None}


def _summarize(
    checks: QuerySet[HealthCheck],
    *,
    ring: str,
    window_minutes: int,
    expected_devices: int | None = None,
    spread: bool = False,
    metrics: Sequence[str] = (),
) -> RingHealth:
    """Aggregate checks already cut to a window, with the window means of the custom `metrics`.
    An empty window gives the default healthy values with total_devices 0; the gate engine turns
    that into WAIT, never into PROMOTE. `spread` adds the per-device statistics a baseline
    comparison needs (one more query)."""
    aggregates: dict[str, Any] = {
        "devices": Count("device_id", distinct=True),
        "checks": Count("id"),
        "crash_free": Avg("crash_free"),
        # A count, not AVG(boot_ok::float): PostgreSQL has no boolean → float cast.
        "booted": Count("id", filter=Q(boot_ok=True)),
        "availability": Avg("availability"),
        "dropped": Avg("dropped_events"),
        "with_lag": Count("id", filter=Q(event_lag_ms__isnull=False)),
        **_metric_aggregates(metrics),
    }
    if _has_median():
        # One round trip on PostgreSQL: the medians come with the other aggregates.
        aggregates["latency"] = Median("checkin_latency_ms")
        aggregates["lag"] = Median("event_lag_ms")
    totals = checks.aggregate(**aggregates)
    if not totals["checks"]:
        return RingHealth(ring=ring, window_minutes=window_minutes, expected_devices=expected_devices)
    if not _has_median():
        totals["latency"] = _median(checks, "checkin_latency_ms", totals["checks"])
        totals["lag"] = (
            _median(checks.exclude(event_lag_ms=None), "event_lag_ms", totals["with_lag"])
            if totals["with_lag"]
            else None
        )
    return RingHealth(
        ring=ring,
        total_devices=totals["devices"],
        crash_free_rate=totals["crash_free"],
        boot_success_rate=totals["booted"] / totals["checks"],
        median_latency_ms=totals["latency"],
        window_minutes=window_minutes,
        expected_devices=expected_devices,
        checks=totals["checks"],
        availability=totals["availability"],
        event_lag_ms=totals["lag"],
        dropped_events=totals["dropped"],
        metrics=_metric_means(totals, metrics),
        spread=_spread(checks) if spread else None,
    )


def _spread(checks: QuerySet[HealthCheck]) -> DeviceSpread:
    """Each device's mean crash rate and latency over its checks of each minute, then their mean
    and sample variance across these device-minutes, as the rollups keep them (_rollup_spread):
    one query, the per-device-minute step in a subquery."""
    per_device = (
        checks.order_by()
        .values("device_id", minute=TruncMinute("received_at"))
        .annotate(device_crash_free=Avg("crash_free"), device_latency=Avg("checkin_latency_ms"))
    )
    totals = per_device.aggregate(
        devices=Count("device_id", distinct=True),
        crash_free=Avg("device_crash_free"),
        crash_var=Variance("device_crash_free", sample=True),
        latency=Avg("device_latency"),
        latency_var=Variance("device_latency", sample=True),
    )
    return DeviceSpread(
        devices=totals["devices"],
        crash_rate_mean=1 - totals["crash_free"],
        crash_rate_var=totals["crash_var"] or 0.0,
        latency_mean=totals["latency"],
        latency_var=totals["latency_var"] or 0.0,
    )


def _median(checks: QuerySet[HealthCheck], field: str, count: int) -> float:
    """The median by offset into the sorted values: the same SQL on PostgreSQL and SQLite."""
    ordered = checks.order_by(field).values_list(field, flat=True)
    middle = count // 2
    if count % 2:
        return float(ordered[middle])
    low, high = ordered[middle - 1 : middle + 1]
    return (low + high) / 2


def rollout_health(
    *,
    rollout_id: int,
    stage: str,
    version: str,
    window_minutes: int,
    expected_devices: int,
    now: dt.datetime,
    spread: bool = False,
    metrics: Sequence[str] = (),
) -> RingHealth:
    """Health of a rollout's stage from the rollups: the checks of `version` its devices sent after
    the stage targeted them (telemetry.rollups sums each check under the stage that had brought
    the device that version), with the means of the custom `metrics`; `spread` adds the
    per-device statistics a baseline comparison reads."""
    groups = _group_ids(rollout_id=rollout_id, stage=stage, version=version)
    return _rollup_health(
        groups,
        ring=stage,
        window_minutes=window_minutes,
        now=now,
        expected_devices=expected_devices,
        metrics=metrics,
        devices_column="devices",
        spread=spread,
    )


def previous_release_health(
    *,
    version: str,
    heard_within_minutes: int,
    window_minutes: int,
    now: dt.datetime,
    spread: bool = False,
    metrics: Sequence[str] = (),
) -> RingHealth:
    """Health of the fleet's devices off `version` (a rollout's baseline across the fleet), from
    the rollups: a device counts when its newest check is of another version; those heard from
    within `heard_within_minutes` are expected to report, as a ring's activated devices are."""
    groups = list(HealthGroup.objects.exclude(version=version).values_list("id", flat=True))
    heard = HealthMinute.objects.filter(
        group_id__in=groups, minute__gte=window_start(heard_within_minutes, now), minute__lte=now
    ).aggregate(devices=Sum("ring_devices"))
    return _rollup_health(
        groups,
        ring="baseline",
        window_minutes=window_minutes,
        now=now,
        expected_devices=heard["devices"] or 0,
        metrics=metrics,
        # A device counts where its newest check is: not here once it has installed the release.
        devices_column="ring_devices",
        spread=spread,
    )


def site_baseline_devices(
    *, version: str, sites: Iterable[str], heard_within_minutes: int, now: dt.datetime
) -> QuerySet[Device]:
    """The devices at `sites` a small stage of `version` is compared with: those not on it, heard
    from within `heard_within_minutes` (so each is expected to report, as a ring's activated
    devices are)."""
    return Device.objects.filter(
        site__in=[site for site in set(sites) if site],
        last_heartbeat__gte=now - dt.timedelta(minutes=heard_within_minutes),
    ).exclude(app_version=version)


def baseline_health(
    devices: QuerySet[Device],
    *,
    version: str,
    expected_devices: int,
    window_minutes: int,
    now: dt.datetime,
    spread: bool = False,
    metrics: Sequence[str] = (),
) -> RingHealth:
    """Health of the baseline `devices` (site_baseline_devices) over the window, from their checks of
    versions other than `version` (a device rolled back sent some of it). Only devices still off
    the release: the old checks of a device that has installed it since are
    from earlier in the window, and an outside event that started meanwhile would read as the
    release's fault against them."""
    checks = HealthCheck.objects.filter(
        received_at__gte=window_start(window_minutes, now), received_at__lte=now, device__in=devices
    ).exclude(version=version)
    return _summarize(
        checks,
        ring="baseline",
        window_minutes=window_minutes,
        expected_devices=expected_devices,
        spread=spread,
        metrics=metrics,
    )


def reports_version_since_targeted(*, rollout_id: int, stage: str, version: str) -> Exists:
    """For a query over a rollout stage's deployments (rows with a `device_id`): whether the
    device's newest health check is of `version`, sent since the stage targeted it, which says it
    runs that version even when its `activated` report never came. One primary-key probe of the
    device's check state per deployment."""
    groups = HealthGroup.objects.filter(rollout_id=rollout_id, stage=stage, version=version)
    return Exists(DeviceCheckState.objects.filter(device_id=OuterRef("device_id"), group__in=groups))


def device_health(
    device: Device, *, window_minutes: int, now: dt.datetime, metrics: Sequence[str] = ()
) -> RingHealth:
    """One device's health over the window, summarized like a ring's (under the device's ring)."""
    checks = HealthCheck.objects.filter(
        device=device, received_at__gte=window_start(window_minutes, now), received_at__lte=now
    )
    return _summarize(checks, ring=device.ring, window_minutes=window_minutes, metrics=metrics)


def device_recent_checks(device: Device, *, limit: int) -> QuerySet[HealthCheck]:
    """The device's last `limit` checks, newest first."""
    return HealthCheck.objects.filter(device=device).order_by("-received_at")[:limit]


def checks_received_by_ring(*, after: dt.datetime, until: dt.datetime) -> dict[str, int]:
    """How many checks arrived in (after, until], by the device's ring: the fleet's ingest rate.
    The (ring, received_at) and received_at indexes serve the window, however large the table."""
    rows = (
        HealthCheck.objects.filter(received_at__gt=after, received_at__lte=until)
        .order_by()
        .values_list("ring")
        .annotate(count=Count("pk"))
    )
    return dict(rows)


def critically_unhealthy_devices(*, window_minutes: int, now: dt.datetime) -> tuple[int, int]:
    """(devices that reported in the window, those among them whose newest minute of checks is
    critically unhealthy: a mean crash-free rate below CRASH_FREE_CRITICAL or a boot success share
    below BOOT_SUCCESS_CRITICAL), summed from the rollups over the minute index."""
    totals = HealthMinute.objects.filter(
        minute__gte=window_start(window_minutes, now), minute__lte=now
    ).aggregate(devices=Sum("ring_devices"), critical=Sum("critical_devices"))
    return totals["devices"] or 0, totals["critical"] or 0


def reporting_rings() -> list[str]:
    """The configured rings, then any other ring a device has reported health from (read from the
    rollups' few groups, not from the devices)."""
    configured = list(settings.SAFEROLL_RING_SHARES)
    others = HealthGroup.objects.exclude(ring__in=configured).order_by("ring").values_list("ring", flat=True)
    return [*configured, *others.distinct()]


def known_ring(ring: str) -> bool:
    """A ring exists when the fleet's configuration names it or a device is in it."""
    return ring in settings.SAFEROLL_RING_SHARES or Device.objects.filter(ring=ring).exists()


def ring_health(
    ring: str,
    *,
    window_minutes: int = 5,
    version: str | None = None,
    now: dt.datetime | None = None,
    metrics: Sequence[str] = (),
) -> RingHealth:
    """Health of every device of a ring (optionally only checks reporting `version`), from the
    rollups.

    Every device of the ring (running `version`, when given) is expected to report, so a ring
    that goes silent shows a falling reporting rate instead of fewer, healthier-looking checks."""
    now = now or timezone.now()
    devices = Device.objects.filter(ring=ring)
    if version:
        devices = devices.filter(app_version=version)
    return _rollup_health(
        _group_ids(ring=ring, **({"version": version} if version else {})),
        ring=ring,
        window_minutes=window_minutes,
        now=now,
        expected_devices=devices.count(),
        metrics=metrics,
        # Without a version a device is counted once in its ring, whichever versions it reported.
        devices_column="devices" if version else "ring_devices",
    )


@dataclass(frozen=True)
class SeriesPoint:
    """One minute of a health chart. Metrics are None for a minute in which nobody reported:
    no data is drawn as a gap, never as a healthy value."""

    minute: dt.datetime
    total_devices: int = 0
    crash_free_rate: float | None = None
    boot_success_rate: float | None = None
    median_latency_ms: float | None = None
    # The minute's mean of each custom metric asked for that some check carried.
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ring_series(
    *,
    ring: str,
    version: str | None = None,
    minutes: int = 30,
    now: dt.datetime | None = None,
    metrics: Sequence[str] = (),
) -> list[SeriesPoint]:
    """Per-minute health of a ring (optionally only checks reporting `version`) over the last
    `minutes` minutes, oldest first, one point per minute (the current, partial minute included),
    minutes without checks carrying None figures; with the per-minute means of the custom `metrics`."""
    return _rollup_series(
        _group_ids(ring=ring, **({"version": version} if version else {})),
        minutes=minutes,
        now=now or timezone.now(),
        metrics=metrics,
        devices_column="minute_devices" if version else "minute_ring_devices",
    )


def rollout_series(
    *,
    rollout_id: int,
    stage: str | None,
    version: str,
    minutes: int,
    now: dt.datetime,
    metrics: Sequence[str] = (),
) -> list[SeriesPoint]:
    """Per-minute health of the checks of `version` a rollout's devices sent after it targeted
    them, in one stage (every stage when None): what its gates judge, minute by minute."""
    return _rollup_series(
        _group_ids(rollout_id=rollout_id, version=version, **({"stage": stage} if stage is not None else {})),
        minutes=minutes,
        now=now,
        metrics=metrics,
        devices_column="minute_devices",
    )


# --- reading the rollups ----------------------------------------------------------------------
# Group ids are read first (a small table) and the minutes by `group_id IN (…) AND minute …`, which
# the (group, minute) unique indexes serve whatever the planner's statistics say.


def _group_ids(**filters: Any) -> list[int]:
    return list(HealthGroup.objects.filter(**filters).values_list("id", flat=True))


def _rollup_health(
    groups: list[int],
    *,
    ring: str,
    window_minutes: int,
    now: dt.datetime,
    expected_devices: int | None,
    metrics: Sequence[str],
    devices_column: str,
    spread: bool = False,
) -> RingHealth:
    """A window's health summed from the rollups of `groups`: three small queries (the minutes'
    sums, the value counts behind the medians, the custom metrics when asked for)."""
    empty = RingHealth(ring=ring, window_minutes=window_minutes, expected_devices=expected_devices)
    if not groups:
        return empty
    start = window_start(window_minutes, now)
    totals = HealthMinute.objects.filter(group_id__in=groups, minute__gte=start, minute__lte=now).aggregate(
        devices=Sum(devices_column),
        checks=Sum("checks"),
        crash_free=Sum("crash_free_sum"),
        booted=Sum("booted"),
        availability=Sum("availability_sum"),
        with_availability=Sum("availability_count"),
        dropped=Sum("dropped_sum"),
        with_dropped=Sum("dropped_count"),
        device_minutes=Sum("minute_devices"),
        crash_rates=Sum("device_crash_rate_sum"),
        crash_rate_squares=Sum("device_crash_rate_squares"),
        latencies=Sum("device_latency_sum"),
        latency_squares=Sum("device_latency_squares"),
    )
    checks = totals["checks"]
    if not checks:
        return empty
    counts = _value_counts(groups, start=start, now=now)
    return RingHealth(
        ring=ring,
        total_devices=totals["devices"],
        crash_free_rate=totals["crash_free"] / checks,
        boot_success_rate=totals["booted"] / checks,
        median_latency_ms=_median_of(counts[HealthMinuteValue.Measure.LATENCY]) or 0,
        window_minutes=window_minutes,
        expected_devices=expected_devices,
        checks=checks,
        availability=_mean(totals["availability"], totals["with_availability"]),
        event_lag_ms=_median_of(counts[HealthMinuteValue.Measure.EVENT_LAG]),
        dropped_events=_mean(totals["dropped"], totals["with_dropped"]),
        metrics=_rollup_metric_means(groups, start=start, now=now, names=metrics),
        spread=_rollup_spread(totals) if spread else None,
    )


def _rollup_spread(totals: dict[str, Any]) -> DeviceSpread:
    """The spread across devices from the window's device-minutes: each device's means over its
    checks of one minute. A device reporting in two minutes of the window is two of them, so the
    variance also holds each device's own minute-to-minute noise, which only makes a comparison
    more careful; the count of devices is the window's distinct devices."""
    count = totals["device_minutes"]

    def variance(total: float, squares: float) -> float:
        return max(0.0, (squares - total * total / count) / (count - 1)) if count > 1 else 0.0

    return DeviceSpread(
        devices=totals["devices"],
        crash_rate_mean=totals["crash_rates"] / count,
        crash_rate_var=variance(totals["crash_rates"], totals["crash_rate_squares"]),
        latency_mean=totals["latencies"] / count,
        latency_var=variance(totals["latencies"], totals["latency_squares"]),
    )


def _mean(total: float | None, count: int | None) -> float | None:
    return total / count if count and total is not None else None


def _value_counts(
    groups: list[int], *, start: dt.datetime, now: dt.datetime
) -> dict[str, list[tuple[int, int]]]:
    """Each measure's (value, number of checks) pairs over the window, in value order."""
    rows = (
        HealthMinuteValue.objects.filter(group_id__in=groups, minute__gte=start, minute__lte=now)
        .values_list("measure", "value")
        .annotate(checks=Sum("count"))
        .order_by("measure", "value")
    )
    counts: dict[str, list[tuple[int, int]]] = {measure: [] for measure in HealthMinuteValue.Measure.values}
    for measure, value, checks in rows:
        counts[measure].append((value, checks))
    return counts


def _median_of(counts: Sequence[tuple[int, int]]) -> float | None:
    """The continuous median (PostgreSQL's percentile_cont(0.5)) of values given with their counts
    in value order: the middle value, or the mean of the two middle ones; None without values."""
    total = sum(count for _, count in counts)
    if not total:
        return None
    lower_rank, upper_rank = (total - 1) // 2, total // 2
    seen, lower = 0, 0
    for value, count in counts:
        if seen <= lower_rank < seen + count:
            lower = value
        seen += count
        if seen > upper_rank:
            return (lower + value) / 2
    raise AssertionError("the counts add up to their total")


def _rollup_metric_means(
    groups: list[int], *, start: dt.datetime, now: dt.datetime, names: Sequence[str]
) -> dict[str, float]:
    """The window mean of each custom metric in `names` that some check carried."""
    if not names:
        return {}
    rows = (
        HealthMinuteMetric.objects.filter(
            group_id__in=groups, minute__gte=start, minute__lte=now, name__in=names
        )
        .values_list("name")
        .annotate(total=Sum("total"), checks=Sum("count"))
    )
    return {name: total / checks for name, total, checks in rows if checks}


def _rollup_series(
    groups: list[int], *, minutes: int, now: dt.datetime, metrics: Sequence[str], devices_column: str
) -> list[SeriesPoint]:
    last_minute = minute_of(now)
    first_minute = last_minute - dt.timedelta(minutes=minutes - 1)
    in_range = {"group_id__in": groups, "minute__gte": first_minute, "minute__lte": now}
    rows = {
        row["minute"]: row
        for row in HealthMinute.objects.filter(**in_range)
        .values("minute")
        .annotate(
            devices=Sum(devices_column),
            checks=Sum("checks"),
            crash_free=Sum("crash_free_sum"),
            booted=Sum("booted"),
        )
        .order_by()
    }
    latencies: dict[dt.datetime, list[tuple[int, int]]] = defaultdict(list)
    for minute, value, checks in (
        HealthMinuteValue.objects.filter(**in_range, measure=HealthMinuteValue.Measure.LATENCY)
        .values_list("minute", "value")
        .annotate(checks=Sum("count"))
        .order_by("minute", "value")
    ):
        latencies[minute].append((value, checks))
    means: dict[dt.datetime, dict[str, float]] = defaultdict(dict)
    if metrics:
        for minute, name, total, checks in (
            HealthMinuteMetric.objects.filter(**in_range, name__in=metrics)
            .values_list("minute", "name")
            .annotate(total=Sum("total"), checks=Sum("count"))
        ):
            if checks:
                means[minute][name] = total / checks
    points = []
    for offset in range(minutes):
        minute = first_minute + dt.timedelta(minutes=offset)
        row = rows.get(minute)
        if row is None or not row["checks"]:
            points.append(SeriesPoint(minute=minute))
            continue
        points.append(
            SeriesPoint(
                minute=minute,
                total_devices=row["devices"],
                crash_free_rate=row["crash_free"] / row["checks"],
                boot_success_rate=row["booted"] / row["checks"],
                median_latency_ms=_median_of(latencies[minute]),
                metrics=means[minute],
            )
        )
    return points
