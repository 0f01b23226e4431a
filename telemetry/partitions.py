"""Raw health checks in time partitions (PostgreSQL only): retention drops whole partitions.

On PostgreSQL telemetry_healthcheck is partitioned by RANGE (device_time) (migration 0003). A
unique constraint of a partitioned table must contain the partition key, and the one that stores a
retried check once, (device, device_time), does; received_at, the clock windows are cut on, could
not be the key. Partitions are SAFEROLL_HEALTH_PARTITION_HOURS wide, aligned on the Unix epoch and
named after their first hour in UTC (telemetry_healthcheck_p2026120713). A check whose device_time
no partition covers (a clock far off, or a partition not made yet) lands in the DEFAULT partition:
every check is accepted and stored once, whatever its time.

The hourly prune (telemetry.services.health_checks_prune) calls health_partitions_rotate, which
- makes the partitions from the current one to AHEAD past it, moving the rows DEFAULT holds for
  their range into them (PostgreSQL refuses to attach a partition whose rows sit in DEFAULT);
- drops the partitions whose whole range is older than the retention: no row is read or deleted;
- deletes, in batches, DEFAULT's checks received before the retention.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import OperationalError, connection, transaction

logger = logging.getLogger(__name__)

TABLE = "telemetry_healthcheck"
DEFAULT_PARTITION = f"{TABLE}_default"
# Partitions made past the current one. The prune runs hourly, so with hourly partitions three
# missed runs still find the next hour's partition made; checks beyond it wait in DEFAULT and are
# moved when their partition is made.
AHEAD = 4
# How long a step waits for a table lock before giving up until the next run. Attaching a partition
# locks DEFAULT and dropping one locks the whole table; while such a lock waits for a long read,
# ingestion queues behind it, so a partition made or dropped an hour late is the better outcome.
LOCK_TIMEOUT = "2s"
# SQLSTATE of a lock not granted within lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Partition:
    """One range partition of the raw checks: those with start <= device_time < end."""

    name: str
    start: dt.datetime
    end: dt.datetime


def health_partitions() -> list[Partition]:
    """The range partitions (DEFAULT aside), oldest first, with the bounds PostgreSQL holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, bounds[1]::timestamptz, bounds[2]::timestamptz "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid, "
            r"regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''(.+)''\) TO \(''(.+)''\)') bounds "
            "WHERE i.inhparent = %s::regclass AND bounds IS NOT NULL ORDER BY 2",
            [TABLE],
        )
        return [Partition(*row) for row in cursor.fetchall()]


def slot_start(moment: dt.datetime) -> dt.datetime:
    """Where the partition holding `moment` starts: slots are SAFEROLL_HEALTH_PARTITION_HOURS wide
    from the Unix epoch, so daily partitions start at midnight UTC."""
    width = _width()
    return _EPOCH + (moment - _EPOCH) // width * width


def health_partitions_make(*, now: dt.datetime, since: dt.datetime | None = None) -> list[Partition]:
    """Make the missing partitions from the one holding `since` (default: `now`) to AHEAD past the
    one holding `now`, moving into each the rows DEFAULT holds for its range. Returns those made.

    Existing partitions are kept as they are: a new one starts where an existing one ends and
    ends where the next one starts, so partitions made at another width never overlap."""
    existing = health_partitions()
    end = slot_start(now) + (AHEAD + 1) * _width()
    made = []
    moment = slot_start(since or now)
    while moment < end:
        covering = next((p for p in existing if p.start <= moment < p.end), None)
        if covering is not None:
            moment = covering.end
            continue
        # To the slot's end (back on the grid after a width change), or to the next partition.
        following = min((p.start for p in existing if p.start > moment), default=end)
        partition = Partition(_name(moment), moment, min(slot_start(moment) + _width(), following))
        _attach(partition)
        made.append(partition)
        moment = partition.end
    return made


def _attach(partition: Partition) -> None:
    """Make the partition as a table of its own, move DEFAULT's rows of its range into it and attach
    it, all or nothing. Attaching takes a lighter lock on the checks' table than CREATE TABLE ...
    PARTITION OF, which would block ingestion and reads for as long as it waits."""
    quote = connection.ops.quote_name
    table, default, name = quote(TABLE), quote(DEFAULT_PARTITION), quote(partition.name)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)"
        )
        # Checks routed to DEFAULT wait until the partition is attached: one of its range inserted
        # after the move would make the attach fail. Reads go on.
        cursor.execute(f"LOCK TABLE {default} IN EXCLUSIVE MODE")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {default} WHERE device_time >= %s AND device_time < %s RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved",
            [partition.start, partition.end],
        )
        if cursor.rowcount:
            logger.info("moved %d checks from %s into %s", cursor.rowcount, DEFAULT_PARTITION, partition.name)
        # Bounds are written as literals: DDL takes no parameters. Attaching scans DEFAULT once more
        # to prove it holds none of the range, builds the partition's indexes and checks its foreign
        # key, which holds off writes to the devices' table until commit. DEFAULT is locked first
        # and the devices' table second, the order ingestion takes them in (checks, then devices).
        cursor.execute(
            f"ALTER TABLE {table} ATTACH PARTITION {name} "
            f"FOR VALUES FROM ({_literal(partition.start)}) TO ({_literal(partition.end)})"
        )


def health_partitions_drop(*, before: dt.datetime) -> list[Partition]:
    """Drop the partitions whose whole range is older than `before`: their files go, whatever
    their size, and no row is read. Returns those dropped."""
    expired = [partition for partition in health_partitions() if partition.end <= before]
    with connection.cursor() as cursor:
        for partition in expired:
            cursor.execute(f"DROP TABLE {connection.ops.quote_name(partition.name)}")
    return expired


def health_default_prune(*, before: dt.datetime, batch: int) -> int:
    """Delete DEFAULT's checks received before `before`, a batch at a time, each batch committed on
    its own so that no delete holds its locks long. Returns how many were deleted.

    DEFAULT holds only the checks of clocks far off, so this stays small; its received_at index
    finds them, and deleting by row address (ctid) spares a second index lookup."""
    default = connection.ops.quote_name(DEFAULT_PARTITION)
    deleted = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"DELETE FROM {default} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {default} WHERE received_at < %s LIMIT %s))",
                [before, batch],
            )
            deleted += cursor.rowcount
            if cursor.rowcount < batch:
                return deleted


def health_partitions_rotate(*, now: dt.datetime, cutoff: dt.datetime, batch: int) -> int:
    """Make the partitions ahead, drop those older than `cutoff` and prune DEFAULT's checks received
    before it. Returns how many rows were deleted one by one (from DEFAULT); dropped partitions are
    logged, not counted: counting them would read them.

    Safe to run twice or on two workers at once: making and dropping run under one advisory lock
    and re-read the partitions under it, so the second finds the work done; two DEFAULT prunes
    just share the batches."""
    with _step("making the partitions ahead"):
        made = health_partitions_make(now=now)
        if made:
            logger.info("made health check partitions %s", ", ".join(partition.name for partition in made))
    with _step("dropping expired partitions"):
        dropped = health_partitions_drop(before=cutoff)
        if dropped:
            logger.info(
                "dropped health check partitions %s", ", ".join(partition.name for partition in dropped)
            )
    return health_default_prune(before=cutoff, batch=batch)


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    """One step of the rotation in a transaction of its own, under the rotation's advisory lock
    (a second worker waits for the first, then finds nothing left to do) and with LOCK_TIMEOUT on
    the table locks it takes: a step whose lock is not granted in time is logged and left for the
    next run."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [TABLE])
            # After the advisory lock: waiting for the other worker is not a reason to give up.
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
            yield
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        logger.warning("%s is left for the next run: a table lock was not granted in %s", what, LOCK_TIMEOUT)


def _name(start: dt.datetime) -> str:
    return f"{TABLE}_p{start.astimezone(dt.UTC):%Y%m%d%H}"


def _width() -> dt.timedelta:
    return dt.timedelta(hours=settings.SAFEROLL_HEALTH_PARTITION_HOURS)


def _literal(moment: dt.datetime) -> str:
    """A timestamp as an SQL literal, for DDL; only ever a datetime computed here."""
    return f"'{moment.astimezone(dt.UTC).isoformat()}'"
