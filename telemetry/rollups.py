"""Per-minute health rollups, written on ingest in the same transaction as the checks.

Every health window SafeRoll reads (the gates, the ring health API, the portal, the live pages)
is a sum over these rows (telemetry.selectors), so it costs the same whether the window holds ten
checks or ten million. A check is summed under its group (models.HealthGroup: the device's ring,
the version reported, and the rollout stage that targeted the device with that version before the
check) and the minute it was received in. Only checks that were stored count: a retried check
the unique constraint skipped is not summed twice.

Reporting devices cannot be summed from per-minute distinct counts, so each device's newest check
is kept (models.DeviceCheckState) and a device is counted once, at the minute of its newest check
in a group: a new check moves it from that minute to its own. The state holds one group per
device, so a device that leaves a group and comes back within one window counts twice there (a
release rolled back and rolled out again within minutes).

The state also holds the device's checks of its newest minute so far, so each minute carries the
sums and sums of squares of its devices' own means (crash rate, latency): the spread across
devices that the baseline comparison tests, without reading a check twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, cast

from django.db import connection, transaction
from django.db.models import Field, Model, Q

from devices.models import Device
from telemetry.health import BOOT_SUCCESS_CRITICAL, CRASH_FREE_CRITICAL
from telemetry.models import (
    DeviceCheckState,
    HealthCheck,
    HealthGroup,
    HealthMinute,
    HealthMinuteMetric,
    HealthMinuteValue,
)

# Rows per INSERT statement: SQLite's limit of bound variables is the tighter one.
_ROWS_PER_STATEMENT = 200


class CheckRow(NamedTuple):
    """A stored check's column values, in the order ingestion writes them (everything but the id)."""

    device: int
    ring: str
    version: str
    boot_ok: bool
    crash_free: float
    checkin_latency_ms: int
    availability: float | None
    event_lag_ms: int | None
    dropped_events: int | None
    metrics: dict[str, float]
    device_time: dt.datetime
    received_at: dt.datetime

    @classmethod
    def of(cls, check: HealthCheck) -> CheckRow:
        return cls(*(getattr(check, "device_id" if name == "device" else name) for name in cls._fields))


class Targeting(NamedTuple):
    """A rollout stage that targeted a device with a version."""

    rollout_id: int
    stage: str
    targeted_at: dt.datetime


# (device pk, version) pairs → the newest targeting of each that exists. Rollouts build on
# telemetry, so they hand their lookup in (rollouts.apps) rather than telemetry importing them.
TargetingLookup = Callable[[Collection[int], Collection[str]], dict[tuple[int, str], Targeting]]
_targeting_lookup: TargetingLookup = lambda devices, versions: {}  # noqa: E731


def use_targeting_lookup(lookup: TargetingLookup) -> None:
    global _targeting_lookup
    _targeting_lookup = lookup


def minute_of(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0)


class _GroupKey(NamedTuple):
    ring: str
    version: str
    rollout_id: int | None
    stage: str


@dataclass
class _MinuteSums:
    """What one batch adds to one group's minute (the columns of HealthMinute it adds to)."""

    checks: int = 0
    crash_free_sum: float = 0.0
    booted: int = 0
    availability_sum: float = 0.0
    availability_count: int = 0
    dropped_sum: int = 0
    dropped_count: int = 0
    devices: int = 0
    ring_devices: int = 0
    minute_devices: int = 0
    minute_ring_devices: int = 0
    device_crash_rate_sum: float = 0.0
    device_crash_rate_squares: float = 0.0
    device_latency_sum: float = 0.0
    device_latency_squares: float = 0.0
    critical_devices: int = 0

    def add(self, row: CheckRow) -> None:
        self.checks += 1
        self.crash_free_sum += row.crash_free
        self.booted += row.boot_ok
        if row.availability is not None:
            self.availability_sum += row.availability
            self.availability_count += 1
        if row.dropped_events is not None:
            self.dropped_sum += row.dropped_events
            self.dropped_count += 1

    def enter_ring(self, newest: _DeviceMinute) -> None:
        """A device's newest check in its ring is now in this minute (`newest`: its checks here)."""
        self.ring_devices += 1
        self.critical_devices += newest.critical

    def leave_ring(self, newest: _DeviceMinute) -> None:
        """A device's newest check in its ring was in this minute and is now in a later one."""
        self.ring_devices -= 1
        self.critical_devices -= newest.critical

    def move_device_means(self, before: _DeviceMinute | None, after: _DeviceMinute) -> None:
        """Replace one device's means of the minute (`before`, None when it had no check in this
        minute yet: a device-minute begins) by `after`."""
        old_crash, old_latency = (before.crash_rate, before.latency) if before else (0.0, 0.0)
        self.device_crash_rate_sum += after.crash_rate - old_crash
        self.device_crash_rate_squares += after.crash_rate**2 - old_crash**2
        self.device_latency_sum += after.latency - old_latency
        self.device_latency_squares += after.latency**2 - old_latency**2


_SUM_COLUMNS = [field.name for field in fields(_MinuteSums)]


class _DeviceMinute(NamedTuple):
    """A device's checks in one group and minute so far."""

    checks: int
    crash_free_sum: float
    latency_sum: float
    booted: int

    @property
    def crash_rate(self) -> float:
        return 1 - self.crash_free_sum / self.checks

    @property
    def latency(self) -> float:
        return self.latency_sum / self.checks

    @property
    def critical(self) -> int:
        """1 when the device's checks of the minute are critically unhealthy, else 0."""
        return int(
            self.crash_free_sum / self.checks < CRASH_FREE_CRITICAL
            or self.booted / self.checks < BOOT_SUCCESS_CRITICAL
        )

    def plus(self, row: CheckRow) -> _DeviceMinute:
        return _DeviceMinute(
            self.checks + 1,
            self.crash_free_sum + row.crash_free,
            self.latency_sum + row.checkin_latency_ms,
            self.booted + row.boot_ok,
        )


_NO_CHECKS = _DeviceMinute(0, 0.0, 0.0, 0)


class _DeviceState(NamedTuple):
    group: int
    ring: str
    at: dt.datetime
    minute: _DeviceMinute


class _Batch:
    """A batch's additions to the rollups, keyed by (group id, minute)."""

    def __init__(self) -> None:
        self.sums: dict[tuple[int, dt.datetime], _MinuteSums] = defaultdict(_MinuteSums)
        self.values: dict[tuple[int, dt.datetime, str, int], int] = defaultdict(int)
        self.metrics: dict[tuple[int, dt.datetime, str], list[float]] = defaultdict(lambda: [0.0, 0])

    def add_check(self, group: int, row: CheckRow) -> None:
        minute = minute_of(row.received_at)
        self.sums[group, minute].add(row)
        self.values[group, minute, HealthMinuteValue.Measure.LATENCY, row.checkin_latency_ms] += 1
        if row.event_lag_ms is not None:
            self.values[group, minute, HealthMinuteValue.Measure.EVENT_LAG, row.event_lag_ms] += 1
        for name, value in (row.metrics or {}).items():
            total = self.metrics[group, minute, name]
            total[0] += value
            total[1] += 1

    def count_device(
        self, state: _DeviceState | None, group: int, ring: str, row: CheckRow
    ) -> _DeviceState | None:
        """Count a device's check `row` in `group` against its newest counted check `state`;
        returns the device's new state, None when it stays as it was."""
        at = row.received_at
        minute = minute_of(at)
        here = self.sums[group, minute]
        if state is not None and group == state.group and minute == minute_of(state.at):
            # Another check of the device's newest minute, in whatever order: its means move.
            after = state.minute.plus(row)
            here.move_device_means(state.minute, after)
            here.critical_devices += after.critical - state.minute.critical
            return state._replace(at=max(at, state.at), minute=after)
        # A device-minute begins.
        begun = _NO_CHECKS.plus(row)
        here.move_device_means(None, begun)
        here.minute_devices += 1
        if state is None:
            here.devices += 1
            here.enter_ring(begun)
            here.minute_ring_devices += 1
            return _DeviceState(group, ring, at, begun)
        before = self.sums[state.group, minute_of(state.at)]
        same_minute = minute == minute_of(state.at)
        if at < state.at:
            # An older check than the newest one counted (written out of order): the device is
            # already counted at a later minute wherever it was seen last.
            if group != state.group:
                here.devices += 1
            if ring != state.ring:
                here.enter_ring(begun)
                here.minute_ring_devices += 1
            elif not same_minute:
                here.minute_ring_devices += 1
            return None
        if group == state.group:
            before.devices -= 1
            here.devices += 1
            before.leave_ring(state.minute)
            here.enter_ring(begun)
            here.minute_ring_devices += 1
            return _DeviceState(group, ring, at, begun)
        # Into another group: its previous group keeps the device's last sighting there.
        here.devices += 1
        if ring == state.ring:
            before.leave_ring(state.minute)
            if not same_minute:
                here.minute_ring_devices += 1
        else:
            here.minute_ring_devices += 1
        here.enter_ring(begun)
        return _DeviceState(group, ring, at, begun)


def rollups_record(rows: Sequence[CheckRow]) -> None:
    """Add newly stored checks to the rollups and move their devices' counts. Call it inside the
    transaction that stored them, so the checks and their sums commit or roll back together."""
    if not rows:
        return
    groups = _group_ids_of(rows)
    states = _lock_device_states({row.device for row in rows})
    batch = _Batch()
    moved: dict[int, _DeviceState] = {}
    for row in sorted(rows, key=operator.attrgetter("device", "received_at")):
        key = groups.key_of(row)
        group = groups.ids[key]
        batch.add_check(group, row)
        state = batch.count_device(states.get(row.device), group, key.ring, row)
        if state is not None:
            states[row.device] = moved[row.device] = state
    _write_states(moved)
    _write_batch(batch)


@dataclass
class _Groups:
    targetings: dict[tuple[int, str], Targeting]
    ids: dict[_GroupKey, int]

    def key_of(self, row: CheckRow) -> _GroupKey:
        targeting = self.targetings.get((row.device, row.version))
        if targeting is None or targeting.targeted_at > row.received_at:
            return _GroupKey(row.ring, row.version, None, "")
        return _GroupKey(row.ring, row.version, targeting.rollout_id, targeting.stage)


def _group_ids_of(rows: Sequence[CheckRow]) -> _Groups:
    groups = _Groups(
        targetings=_targeting_lookup({row.device for row in rows}, {row.version for row in rows}), ids={}
    )
    keys = {groups.key_of(row) for row in rows}
    groups.ids = _group_ids(keys)
    missing = keys - groups.ids.keys()
    if missing:
        # Created once per group for good; a concurrent batch creating the same one is skipped.
        HealthGroup.objects.bulk_create(
            [HealthGroup(**key._asdict()) for key in missing], ignore_conflicts=True
        )
        groups.ids = _group_ids(keys)
    return groups


def _group_ids(keys: Iterable[_GroupKey]) -> dict[_GroupKey, int]:
    wanted = functools.reduce(operator.or_, (Q(**key._asdict()) for key in keys))
    rows = HealthGroup.objects.filter(wanted).values_list("id", "ring", "version", "rollout_id", "stage")
    return {_GroupKey(*row[1:]): row[0] for row in rows}


def _lock_device_states(devices: Collection[int]) -> dict[int, _DeviceState]:
    """The devices' newest counted checks, with the devices' rows locked until commit: two batches
    counting the same device must see each other's move. In primary-key order, so concurrent
    batches queue instead of deadlocking; NO KEY, so the checks' foreign keys do not conflict."""
    rows = (
        Device.objects.filter(pk__in=devices)
        .order_by("pk")
        .select_for_update(no_key=True, of=("self",))
        .values_list(
            "pk",
            "check_state__group_id",
            "check_state__group__ring",
            "check_state__last_check_at",
            "check_state__minute_checks",
            "check_state__minute_crash_free_sum",
            "check_state__minute_latency_sum",
            "check_state__minute_booted",
        )
    )
    return {
        pk: _DeviceState(group, ring, at, _DeviceMinute(checks, crash_free_sum, latency_sum, booted))
        for pk, group, ring, at, checks, crash_free_sum, latency_sum, booted in rows
        if group is not None
    }


def _write_states(states: dict[int, _DeviceState]) -> None:
    DeviceCheckState.objects.bulk_create(
        [
            DeviceCheckState(
                device_id=device,
                group_id=state.group,
                last_check_at=state.at,
                minute_checks=state.minute.checks,
                minute_crash_free_sum=state.minute.crash_free_sum,
                minute_latency_sum=state.minute.latency_sum,
                minute_booted=state.minute.booted,
            )
            for device, state in sorted(states.items())
        ],
        update_conflicts=True,
        unique_fields=["device"],
        update_fields=[
            "group",
            "last_check_at",
            "minute_checks",
            "minute_crash_free_sum",
            "minute_latency_sum",
            "minute_booted",
        ],
    )


def _write_batch(batch: _Batch) -> None:
    # Sorted by key: concurrent batches upsert the shared rows of a minute in the same order.
    _add_to(
        HealthMinute,
        ["group", "minute"],
        _SUM_COLUMNS,
        sorted(
            (group, minute, *(getattr(sums, name) for name in _SUM_COLUMNS))
            for (group, minute), sums in batch.sums.items()
        ),
    )
    _add_to(
        HealthMinuteValue,
        ["group", "minute", "measure", "value"],
        ["count"],
        sorted((*key, count) for key, count in batch.values.items()),
    )
    _add_to(
        HealthMinuteMetric,
        ["group", "minute", "name"],
        ["total", "count"],
        sorted((*key, total, count) for key, (total, count) in batch.metrics.items()),
    )


def _add_to(model: type[Model], keys: list[str], sums: list[str], rows: list[tuple[Any, ...]]) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET column = column + excluded.column: the same SQL on
    PostgreSQL and SQLite, so a row many batches add to is never read back and written whole."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    model_fields = [cast("Field", model._meta.get_field(name)) for name in [*keys, *sums]]
    names = [quote(cast("str", field.column)) for field in model_fields]
    conflict = ", ".join(names[: len(keys)])
    additions = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in names[len(keys) :])
    placeholders = "(" + ", ".join(["%s"] * len(model_fields)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            params = [
                field.get_db_prep_save(value, connection)
                for row in chunk
                for field, value in zip(model_fields, row, strict=True)
            ]
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES {', '.join([placeholders] * len(chunk))} "
                f"ON CONFLICT ({conflict}) DO UPDATE SET {additions}",
                params,
            )


REBUILD_CHUNK = 5_000


def rollups_rebuild() -> int:
    """Recompute every rollup and device state from the raw checks still kept (after restoring
    checks from a backup, or to fill the rollups of checks stored before they existed). Returns
    the number of checks summed."""
    with transaction.atomic():
        for model in (HealthMinuteValue, HealthMinuteMetric, DeviceCheckState, HealthMinute, HealthGroup):
            model.objects.all().delete()
        summed = 0
        checks = HealthCheck.objects.order_by("received_at", "id").values_list(*_CHECK_FIELDS)
        chunk: list[CheckRow] = []
        for values in checks.iterator(chunk_size=REBUILD_CHUNK):
            chunk.append(CheckRow(*values))
            if len(chunk) == REBUILD_CHUNK:
                rollups_record(chunk)
                summed += len(chunk)
                chunk = []
        rollups_record(chunk)
        return summed + len(chunk)


_CHECK_FIELDS = ["device_id" if name == "device" else name for name in CheckRow._fields]
