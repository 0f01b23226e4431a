"""Retention of raw health checks on PostgreSQL, before and after partitioning (telemetry/partitions.py):
the prune of a backlog of old checks, a 1,000-check batch insert and two reads by receive time, on the
plain table (migration 0002) and then on the partitioned one (latest), in a database of its own.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/saferoll_retention \\
        python -m tests.benchmarks.retention

The database is created if missing and its checks are thrown away. BENCH_BACKLOG (default 10,000,000)
sets the backlog's size. Figures are printed and merged into bench-results.json as `retention.*`.
"""

import datetime as dt
import os
import statistics
import time
from collections.abc import Callable

import django
import psycopg

BACKLOG = int(os.environ.get("BENCH_BACKLOG", "10000000"))
DEVICES = 10_000
BATCH = 1_000
BATCHES = 30
READS = 30
HOUR = dt.timedelta(hours=1)


def main() -> None:
    url = os.environ["BENCH_DATABASE_URL"]
    _create_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saferoll.settings")
    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from tests.benchmarks.merge import figure, merge

    call_command("migrate", verbosity=0)
    now = timezone.now()
    _sql("TRUNCATE telemetry_healthcheck")
    devices = _devices(now)
    figures = {}
    for phase, target in (("before", "0002_health_check_metrics"), ("after", None)):
        call_command("migrate", "telemetry", *([target] if target else []), verbosity=0)
        _sql("TRUNCATE telemetry_healthcheck")
        if phase == "after":
            from telemetry import partitions

            partitions.health_partitions_make(now=now, since=now - 96 * HOUR)
        loaded = _timed(lambda: _load_backlog(devices[0].pk, start=now - 96 * HOUR, end=now - 73 * HOUR))
        _sql("VACUUM ANALYZE telemetry_healthcheck")
        insert = _batch_insert_seconds(devices, now)
        prune, deleted = _prune(phase, now)
        # Reads with the statistics autovacuum would have gathered on the checks just inserted.
        _sql("ANALYZE telemetry_healthcheck")
        window, device_page = _reads(devices[0], now)
        print(
            f"{phase}: backlog of {BACKLOG:,} old checks loaded in {loaded:.0f} s; prune {prune:.2f} s "
            f"({deleted:,} rows deleted one by one); {BATCH:,}-check batch insert median {insert * 1000:.1f} ms; "
            f"last-minute count by ring {window * 1000:.2f} ms; a device's last 20 checks {device_page * 1000:.2f} ms"
        )
        figures.update(
            {
                f"{phase}.prune_backlog_seconds": figure(round(prune, 3), "s"),
                f"{phase}.batch_insert_1000_seconds": figure(round(insert, 4), "s"),
                f"{phase}.window_read_seconds": figure(round(window, 5), "s"),
                f"{phase}.device_checks_read_seconds": figure(round(device_page, 5), "s"),
            }
        )
    merge(figures, prefix="retention.")


def _create_database(url: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(url)
    name = info.pop("dbname")
    with psycopg.connect(**{**info, "dbname": "postgres"}, autocommit=True) as server:
        if not server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            server.execute(f'CREATE DATABASE "{name}"')


def _sql(statement: str, params: list | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _devices(now: dt.datetime) -> list:
    """DEVICES devices, heard from at `now`: their checks write nothing to their rows, so the batch
    insert measures the checks' table alone."""
    from devices.models import Device

    Device.objects.filter(device_id__startswith="retention-").delete()
    Device.objects.bulk_create(
        Device(
            device_id=f"retention-{i}", ring="ring_100", app_version="v1", status="online", last_heartbeat=now
        )
        for i in range(DEVICES)
    )
    return list(Device.objects.filter(device_id__startswith="retention-").order_by("pk"))


def _load_backlog(first_device: int, *, start: dt.datetime, end: dt.datetime) -> None:
    """BACKLOG checks spread evenly over [start, end), each (device, time) once, in one statement."""
    step = (end - start) / BACKLOG
    _sql(
        "INSERT INTO telemetry_healthcheck (device_id, ring, version, boot_ok, crash_free, checkin_latency_ms, "
        "metrics, device_time, received_at) "
        "SELECT %s + g %% %s, 'ring_100', 'v1', true, 0.99, 40, '{}', t, t "
        "FROM generate_series(0, %s - 1) g, LATERAL (SELECT %s + g * %s AS t) moment",
        [first_device, DEVICES, BACKLOG, start, step],
    )


def _batch_insert_seconds(devices: list, now: dt.datetime) -> float:
    """The median of BATCHES batches of BATCH new checks through health_ingest_batch (COPY into a
    staging table, then INSERT ... ON CONFLICT DO NOTHING), after three not counted."""
    from telemetry.services import HealthReport, health_ingest_batch

    seconds = []
    for batch in range(BATCHES + 3):
        at = now - dt.timedelta(seconds=batch)
        checks = [
            (
                device,
                HealthReport(
                    boot_ok=True, crash_free=0.99, checkin_latency_ms=40, version="v1", timestamp=at
                ),
            )
            for device in devices[:BATCH]
        ]
        seconds.append(_timed(lambda checks=checks: health_ingest_batch(checks=checks, now=now)))
    return statistics.median(seconds[3:])


def _prune(phase: str, now: dt.datetime) -> tuple[float, int]:
    """Before: the batched delete the prune did on the plain table (what SQLite still does).
    After: the prune, which drops the backlog's partitions."""
    from django.conf import settings

    from telemetry import services
    from telemetry.models import HealthCheck

    result: list[int] = []
    if phase == "before":
        cutoff = now - dt.timedelta(hours=settings.SAFEROLL_HEALTH_RETENTION_HOURS)
        old = HealthCheck.objects.filter(received_at__lt=cutoff)
        seconds = _timed(lambda: result.append(services._delete_in_batches(old, batch=services.PRUNE_BATCH)))
    else:
        seconds = _timed(lambda: result.append(services.health_checks_prune(now=now)))
    return seconds, result[0]


def _reads(device, now: dt.datetime) -> tuple[float, float]:
    """Median seconds of two reads by receive time, which no partition bound narrows: the checks of
    the last minute counted by ring, and a device's last 20 checks (its page)."""
    from django.db.models import Count

    from telemetry.models import HealthCheck

    def window() -> None:
        list(
            HealthCheck.objects.filter(received_at__gt=now - dt.timedelta(minutes=1), received_at__lte=now)
            .order_by()
            .values("ring")
            .annotate(checks=Count("id"))
        )

    def device_page() -> None:
        list(HealthCheck.objects.filter(device=device).order_by("-received_at")[:20])

    return _median_seconds(window), _median_seconds(device_page)


def _median_seconds(read: Callable[[], None]) -> float:
    return statistics.median(_timed(read) for _ in range(READS))


if __name__ == "__main__":
    main()
