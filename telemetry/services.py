"""Health ingestion: the only way health checks are written.

A check is stored with the ring and version the server knows for the device (the server is
authoritative on rings), the device's own timestamp and the server's receive time. A retried check
(same device, same device timestamp) hits the model's unique constraint and is skipped, so it is
stored once and still acknowledged.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from devices.choices import DeviceStatus
from devices.models import Device
from telemetry import metrics, partitions
from telemetry.models import HealthCheck, HealthMinute, HealthMinuteMetric, HealthMinuteValue
from telemetry.rollups import CheckRow, rollups_record

# Columns a check is written with, in COPY order (everything but the id).
_COLUMNS = CheckRow._fields
_METRICS_AT = _COLUMNS.index("metrics")


@dataclass(frozen=True)
class HealthReport:
    """One validated health check as a device (or its gateway) reported it."""

    boot_ok: bool
    crash_free: float
    checkin_latency_ms: int
    version: str | None = None
    # The device's clock; None means "now" on the server's clock.
    timestamp: dt.datetime | None = None
    availability: float | None = None
    event_lag_ms: int | None = None
    dropped_events: int | None = None
    # Custom KPIs, {name: number}, already validated (telemetry.health.metric_name_problem).
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    accepted: int
    duplicates: int


def health_ingest(*, device: Device, report: HealthReport, now: dt.datetime | None = None) -> bool:
    """Store one check with exactly one INSERT and refresh what the server knows of the device.
    Returns whether the check was new (False: a retry of a stored check, acknowledged all the same).

    `device` is used as loaded (by the device's authentication or the gateway's lookup): whether
    its heartbeat, status or version need a write is decided from it, so the common case (a
    recent heartbeat, same version, online) costs no query beyond the insert."""
    now = now or timezone.now()
    row = _row(device, report, now)
    with transaction.atomic():
        stored = _insert_one(row)
        if stored:
            rollups_record([row])
        _refresh_devices([(device, report)], now=now)
    metrics.record_ingested(accepted=int(stored), duplicates=int(not stored))
    return stored


def health_ingest_batch(
    *, checks: Sequence[tuple[Device, HealthReport]], now: dt.datetime | None = None
) -> BatchResult:
    """Store many checks in one statement and refresh their devices in at most two more.

    Duplicates (already stored, or repeated within the batch) are skipped and counted."""
    now = now or timezone.now()
    if not checks:
        return BatchResult(accepted=0, duplicates=0)
    rows = [_row(device, report, now) for device, report in checks]
    with transaction.atomic():
        stored = _copy_insert(rows) if connection.vendor == "postgresql" else _bulk_insert(rows)
        rollups_record(stored)
        # Last, so the device row locks are held for as short a time as possible.
        _refresh_devices(checks, now=now)
    result = BatchResult(accepted=len(stored), duplicates=len(rows) - len(stored))
    metrics.record_ingested(accepted=result.accepted, duplicates=result.duplicates)
    return result


def _row(device: Device, report: HealthReport, now: dt.datetime) -> CheckRow:
    """A check's column values in _COLUMNS order. Plain tuples, not model instances: building
    a thousand Django models costs more than the COPY that writes them."""
    return CheckRow(
        device.pk,
        # The server is authoritative on rings: the ring a device claims is not stored.
        device.ring,
        report.version or device.app_version,
        report.boot_ok,
        report.crash_free,
        report.checkin_latency_ms,
        report.availability,
        report.event_lag_ms,
        report.dropped_events,
        report.metrics,
        report.timestamp or now,
        now,
    )


@functools.cache
def _fields() -> list:
    return [HealthCheck._meta.get_field(name) for name in _COLUMNS]


def _as_model(row: tuple) -> HealthCheck:
    return HealthCheck(**{field.attname: value for field, value in zip(_fields(), row, strict=True)})


def _insert_one(row: tuple) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING (PostgreSQL and SQLite alike): a retry of a stored check
    is skipped by the unique constraint instead of failing, and the row count says which it was."""
    fields = _fields()
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    values = [field.get_db_prep_save(value, connection) for field, value in zip(fields, row, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(HealthCheck._meta.db_table)} ({columns}) VALUES ({placeholders}) "
            "ON CONFLICT DO NOTHING",
            values,
        )
        return cursor.rowcount == 1


def _copy_insert(rows: list[CheckRow]) -> list[CheckRow]:
    """PostgreSQL: COPY the rows into a temporary staging table, then move them over with
    INSERT ... SELECT ... ON CONFLICT DO NOTHING. COPY is several times faster than a multi-row
    INSERT, and the keys the INSERT returns say which rows were new: those it returns."""
    fields = _fields()
    quote = connection.ops.quote_name
    table = quote(HealthCheck._meta.db_table)
    staging = quote("telemetry_healthcheck_staging")
    columns = ", ".join(quote(field.column) for field in fields)
    # Types are taken from the model, so the staging table follows any migration. ON COMMIT DROP
    # is the safety net; the explicit DROP below lets a second batch run in the same transaction.
    definition = ", ".join(f"{quote(field.column)} {field.db_type(connection)}" for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {staging} ({definition}) ON COMMIT DROP")
        # The cursor's copy() is psycopg's own; wrapping it turns its errors into Django's, so a
        # lost database still answers 503 through the middleware.
        with connection.wrap_database_errors, cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(_copy_row(row))
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} ON CONFLICT DO NOTHING "
            f"RETURNING {quote('device_id')}, {quote('device_time')}"
        )
        inserted = set(cursor.fetchall())
        cursor.execute(f"DROP TABLE {staging}")
    # A check repeated within the batch was stored once, from its first row.
    stored: dict[tuple[int, dt.datetime], CheckRow] = {}
    for row in rows:
        key = (row.device, row.device_time)
        if key in inserted:
            stored.setdefault(key, row)
    return list(stored.values())


def _copy_row(row: tuple) -> tuple:
    """The row as COPY writes it: the metrics as JSON text, which PostgreSQL parses into jsonb on
    its side (psycopg has no dumper for a bare dict, and a Jsonb wrapper per row costs more)."""
    metrics = row[_METRICS_AT]
    text = json.dumps(metrics, allow_nan=False) if metrics else "{}"
    return (*row[:_METRICS_AT], text, *row[_METRICS_AT + 1 :])


def _bulk_insert(rows: list[CheckRow]) -> list[CheckRow]:
    """SQLite (the embedded default): bulk_create, which cannot say how many rows were new, so
    duplicates are found first. SQLite has a single writer and transactions take the write lock
    at BEGIN (settings: IMMEDIATE), so nothing can slip in between the read and the insert."""
    stored = set(
        HealthCheck.objects.filter(
            device_id__in={row.device for row in rows},
            device_time__in={row.device_time for row in rows},
        ).values_list("device_id", "device_time")
    )
    fresh: dict[tuple[int, dt.datetime], CheckRow] = {}
    for row in rows:
        key = (row.device, row.device_time)
        if key not in stored:
            fresh.setdefault(key, row)
    HealthCheck.objects.bulk_create(
        [_as_model(row) for row in fresh.values()], ignore_conflicts=True, batch_size=500
    )
    return list(fresh.values())


def _refresh_devices(checks: Sequence[tuple[Device, HealthReport]], *, now: dt.datetime) -> None:
    """Record that these devices were heard from: heartbeat, status offline → online, version.

    What needs writing is decided from the devices as loaded, so a device heard from within
    SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS, online and on the same version costs no write. The
    write itself is one conditional UPDATE whose conditions are re-checked in SQL: a heartbeat
    never moves backwards and a device flagged for investigation stays flagged, whatever ran
    concurrently."""
    stale_before = now - dt.timedelta(seconds=settings.SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS)
    devices: dict[int, Device] = {}
    latest: dict[int, tuple[dt.datetime, str]] = {}
    for device, report in checks:
        devices[device.pk] = device
        if report.version:
            device_time = report.timestamp or now
            if device.pk not in latest or device_time >= latest[device.pk][0]:
                latest[device.pk] = (device_time, report.version)
    new_versions = {pk: version for pk, (_, version) in latest.items() if version != devices[pk].app_version}
    due = {
        pk
        for pk, device in devices.items()
        if device.last_heartbeat is None
        or device.last_heartbeat < stale_before
        or device.status == DeviceStatus.OFFLINE
        or pk in new_versions
    }
    if not due:
        return

    updates = {
        "last_heartbeat": Case(
            When(Q(last_heartbeat__isnull=True) | Q(last_heartbeat__lt=now), then=Value(now)),
            default=F("last_heartbeat"),
            output_field=_device_field("last_heartbeat"),
        ),
        "status": Case(
            When(status=DeviceStatus.OFFLINE, then=Value(DeviceStatus.ONLINE.value)),
            default=F("status"),
            output_field=_device_field("status"),
        ),
        # The reason belonged to the offline status (e.g. "no heartbeat for 5 minutes").
        "status_reason": Case(
            When(status=DeviceStatus.OFFLINE, then=Value("")),
            default=F("status_reason"),
            output_field=_device_field("status_reason"),
        ),
    }
    if new_versions:
        updates["app_version"] = Case(
            *[When(pk=pk, then=Value(version)) for pk, version in new_versions.items()],
            default=F("app_version"),
            output_field=_device_field("app_version"),
        )
    rows = Device.objects.filter(pk__in=due)
    if len(due) > 1:
        # Two batches naming the same devices in a different order would deadlock if each locked
        # rows as its UPDATE met them; locking them first in primary-key order makes every writer
        # queue in the same order. NO KEY: the checks' foreign keys to these rows do not conflict.
        list(rows.order_by("pk").select_for_update(no_key=True).values_list("pk", flat=True))
    rows.update(**updates)


def _device_field(name: str):
    return Device._meta.get_field(name)


PRUNE_BATCH = 10_000


def health_checks_prune(*, now: dt.datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Apply the raw checks' retention (SAFEROLL_HEALTH_RETENTION_HOURS) and the rollups'
    (SAFEROLL_HEALTH_ROLLUP_RETENTION_HOURS); the periodic task's one entry point. Returns how many
    rows were deleted one by one.

    PostgreSQL: the checks are partitioned by time (telemetry.partitions). The partitions ahead are
    made, whole partitions older than the retention dropped (neither counted nor read, whatever
    their size) and the DEFAULT partition's stragglers deleted in batches. SQLite (the embedded
    default) deletes the checks received before the retention in batches."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(hours=settings.SAFEROLL_HEALTH_RETENTION_HOURS)
    if connection.vendor == "postgresql":
        deleted = partitions.health_partitions_rotate(now=now, cutoff=cutoff, batch=batch)
    else:
        deleted = _delete_in_batches(HealthCheck.objects.filter(received_at__lt=cutoff), batch=batch)
    return deleted + _prune_rollups(now=now, batch=batch)


def _prune_rollups(*, now: dt.datetime, batch: int) -> int:
    """The per-minute rollups older than their own, longer retention (their minute index finds them)."""
    cutoff = now - dt.timedelta(hours=settings.SAFEROLL_HEALTH_ROLLUP_RETENTION_HOURS)
    return sum(
        _delete_in_batches(model.objects.filter(minute__lt=cutoff), batch=batch)
        for model in (HealthMinuteValue, HealthMinuteMetric, HealthMinute)
    )


def _delete_in_batches(rows: QuerySet, *, batch: int) -> int:
    """Delete the rows a batch at a time, so a large backlog never holds one long lock on a table
    that ingestion writes to. Returns how many were deleted."""
    deleted = 0
    while True:
        # The filter's index finds the oldest rows; deleting by id keeps each statement small.
        ids = list(rows.values_list("id", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += rows.model.objects.filter(id__in=ids).delete()[0]
