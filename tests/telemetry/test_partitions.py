"""Raw health checks partitioned by device_time (PostgreSQL): partitions made ahead by the prune,
dropped whole once older than the retention, a DEFAULT partition for the clocks no partition covers,
and a retried check stored once wherever it lands."""

import datetime as dt
import threading

import psycopg
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from telemetry import partitions
from telemetry.models import HealthCheck
from telemetry.services import HealthReport, health_checks_prune, health_ingest, health_ingest_batch
from tests.factories import DeviceFactory, HealthCheckFactory, UserFactory

pytestmark = pytest.mark.django_db

# Years from the partitions the test database was made with, so that each test sees its own.
NOW = dt.datetime(2031, 3, 14, 9, 26, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DEFAULT = partitions.DEFAULT_PARTITION


@pytest.fixture(autouse=True)
def retention(settings):
    settings.SAFEROLL_HEALTH_PARTITION_HOURS = 1
    settings.SAFEROLL_HEALTH_RETENTION_HOURS = 72


@pytest.fixture(autouse=True)
def foreign_keys_checked_now():
    """The rows a test inserts have their (deferred) foreign keys checked at once: PostgreSQL
    refuses to drop a table whose rows still have checks pending in the transaction. The prune
    runs in a transaction of its own, never in the one that inserted."""
    if connection.in_atomic_block:
        check_foreign_keys_now()


def check_foreign_keys_now() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def hour(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2031, 3, day, hour, tzinfo=dt.UTC)


def ranges(since: dt.datetime = NOW - 100 * HOUR) -> list[tuple[dt.datetime, dt.datetime]]:
    """The range partitions from `since` on, as (start, end)."""
    return [(p.start, p.end) for p in partitions.health_partitions() if p.end > since]


def report(at: dt.datetime) -> HealthReport:
    return HealthReport(boot_ok=True, crash_free=0.99, checkin_latency_ms=40, timestamp=at)


def partition_of(device_time: dt.datetime) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM telemetry_healthcheck WHERE device_time = %s", [device_time]
        )
        (name,) = cursor.fetchone()
    return name


def test_the_prune_makes_the_current_partition_and_four_ahead():
    health_checks_prune(now=NOW)

    assert ranges() == [(hour(14, 9 + i), hour(14, 10 + i)) for i in range(5)]
    assert [p.name for p in partitions.health_partitions() if p.start >= hour(14, 9)] == [
        f"telemetry_healthcheck_p20310314{9 + i:02}" for i in range(5)
    ]


def test_wider_partitions_start_on_the_epochs_grid_and_never_overlap_narrower_ones(settings):
    health_checks_prune(now=NOW)
    settings.SAFEROLL_HEALTH_PARTITION_HOURS = 6

    health_checks_prune(now=NOW)

    # The hourly ones stay; the 6-hour slots fill around them, from 06:00 (a multiple of 6 hours
    # since the epoch) to four slots past the current one.
    assert ranges() == [
        (hour(14, 6), hour(14, 9)),
        *[(hour(14, 9 + i), hour(14, 10 + i)) for i in range(5)],
        (hour(14, 14), hour(14, 18)),
        (hour(14, 18), hour(15, 0)),
        (hour(15, 0), hour(15, 6)),
        (hour(15, 6), hour(15, 12)),
    ]


def test_a_check_with_any_device_time_is_stored_once_and_its_retry_acknowledged():
    health_checks_prune(now=NOW)
    device = DeviceFactory()
    boundary = hour(14, 10)
    times = [
        NOW,
        boundary - dt.timedelta(microseconds=1),
        boundary,
        dt.datetime(1970, 1, 2, tzinfo=dt.UTC),
        dt.datetime(2999, 12, 31, tzinfo=dt.UTC),
        NOW + 30 * HOUR,
    ]
    checks = [(device, report(at)) for at in times]

    first = health_ingest_batch(checks=checks, now=NOW)
    again = health_ingest_batch(checks=checks, now=NOW)
    single = [health_ingest(device=device, report=report(at), now=NOW) for at in times]

    assert (first.accepted, again.duplicates, single) == (len(times), len(times), [False] * len(times))
    assert HealthCheck.objects.filter(device=device).count() == len(times)
    assert [partition_of(at) for at in times] == [
        "telemetry_healthcheck_p2031031409",
        "telemetry_healthcheck_p2031031409",
        "telemetry_healthcheck_p2031031410",
        DEFAULT,
        DEFAULT,
        DEFAULT,
    ]


def test_the_single_path_stores_a_check_once_in_the_default_partition():
    device = DeviceFactory()
    skewed = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)

    stored = [health_ingest(device=device, report=report(skewed), now=NOW) for _ in range(2)]

    assert stored == [True, False]
    assert partition_of(skewed) == DEFAULT


def test_the_checks_default_holds_for_a_new_partition_move_into_it_and_stay_stored_once():
    health_checks_prune(now=NOW)
    device = DeviceFactory()
    early = NOW + 5 * HOUR
    health_ingest_batch(checks=[(device, report(early)), (device, report(early + HOUR))], now=NOW)
    assert partition_of(early) == DEFAULT

    health_checks_prune(now=NOW + HOUR)

    assert (partition_of(early), partition_of(early + HOUR)) == ("telemetry_healthcheck_p2031031414", DEFAULT)
    assert health_ingest_batch(checks=[(device, report(early))], now=NOW).duplicates == 1
    assert HealthCheck.objects.filter(device=device).count() == 2


def test_the_prune_drops_partitions_older_than_the_retention_and_keeps_the_recent_checks():
    partitions.health_partitions_make(now=NOW, since=NOW - 80 * HOUR)
    cutoff = NOW - 72 * HOUR
    old = [HealthCheckFactory(received_at=cutoff - i * HOUR) for i in (1, 3, 7)]
    # In the partition that holds the cutoff: kept until all of that partition is old.
    straddling = HealthCheckFactory(received_at=cutoff - dt.timedelta(minutes=20))
    recent = [HealthCheckFactory(received_at=NOW - i * HOUR) for i in (0, 5, 71)]

    deleted_one_by_one = health_checks_prune(now=NOW)

    assert deleted_one_by_one == 0
    assert set(HealthCheck.objects.values_list("id", flat=True)) == {c.id for c in [straddling, *recent]}
    assert not HealthCheck.objects.filter(id__in=[c.id for c in old]).exists()
    assert ranges(since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))[0] == (hour(11, 9), hour(11, 10))


def test_the_prune_deletes_defaults_checks_received_before_the_retention_in_batches():
    health_checks_prune(now=NOW)
    device = DeviceFactory()
    far = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    old = [
        HealthCheckFactory(device=device, received_at=NOW - 73 * HOUR, device_time=far + i * HOUR)
        for i in range(5)
    ]
    kept = HealthCheckFactory(device=device, received_at=NOW - 71 * HOUR, device_time=far - HOUR)

    assert health_checks_prune(now=NOW, batch=2) == len(old)
    assert list(HealthCheck.objects.values_list("id", flat=True)) == [kept.id]
    assert partition_of(kept.device_time) == DEFAULT


def test_running_the_rotation_twice_changes_nothing():
    HealthCheckFactory(received_at=NOW, device_time=NOW + 6 * HOUR)
    first = (health_checks_prune(now=NOW), ranges())

    second = (health_checks_prune(now=NOW), ranges())

    assert first == second == (0, [(hour(14, 9 + i), hour(14, 10 + i)) for i in range(5)])
    assert HealthCheck.objects.count() == 1


def test_a_step_whose_lock_is_not_granted_in_time_is_left_for_the_next_run(monkeypatch, caplog):
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "50ms")
    database = connection.settings_dict
    with psycopg.connect(
        dbname=database["NAME"], user=database["USER"], host=database["HOST"], port=database["PORT"]
    ) as reader:
        # A long read of the checks, still open: it holds every partition as the steps want them.
        reader.execute("SELECT count(*) FROM telemetry_healthcheck")

        assert health_checks_prune(now=NOW) == 0

        assert ranges() == []
        assert "making the partitions ahead is left for the next run" in caplog.text
        assert "dropping expired partitions is left for the next run" in caplog.text
    health_checks_prune(now=NOW)
    assert len(ranges()) == 5


@pytest.mark.django_db(transaction=True)
def test_two_workers_rotating_at_once_make_each_partition_once(settings):
    # Nothing of the test database's own partitions is dropped: they are still there after.
    settings.SAFEROLL_HEALTH_RETENTION_HOURS = 24 * 365 * 100
    start = threading.Barrier(2)
    errors = []

    def worker():
        try:
            start.wait(timeout=10)
            health_checks_prune(now=NOW)
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert ranges(since=hour(14, 0)) == [(hour(14, 9 + i), hour(14, 10 + i)) for i in range(5)]
    finally:
        with connection.cursor() as cursor:
            for partition in partitions.health_partitions():
                if partition.start >= hour(14, 0):
                    cursor.execute(f"DROP TABLE {partition.name}")


def test_the_orm_writes_reads_and_deletes_checks_in_any_partition():
    health_checks_prune(now=NOW)
    device = DeviceFactory()
    in_partition = HealthCheckFactory(device=device, received_at=NOW)
    in_default = HealthCheckFactory(device=device, received_at=NOW, device_time=NOW - 1000 * HOUR)

    assert HealthCheck.objects.get(pk=in_partition.pk).device_time == in_partition.device_time
    assert HealthCheck.objects.get(pk=in_default.pk).device_time == in_default.device_time
    assert in_default.pk > in_partition.pk
    device.delete()

    assert not HealthCheck.objects.exists()


def test_the_admin_shows_a_check_from_any_partition():
    check = HealthCheckFactory(received_at=NOW, device_time=NOW - 1000 * HOUR)
    client = Client()
    client.force_login(UserFactory(role="admin"))

    page = client.get(reverse("admin:telemetry_healthcheck_change", args=[check.pk]))

    assert page.status_code == 200
    assert check.device.device_id in page.content.decode()


def partitioning() -> tuple[str, list[str]] | None:
    """How telemetry_healthcheck is partitioned: its strategy and key columns, or None."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.partstrat, array_agg(a.attname ORDER BY a.attnum) FROM pg_partitioned_table p "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = ANY(p.partattrs) "
            "WHERE p.partrelid = 'telemetry_healthcheck'::regclass GROUP BY p.partstrat"
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def constraints() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'telemetry_healthcheck'::regclass"
        )
        return dict(cursor.fetchall())


def indexes() -> dict[str, str]:
    """The table's indexes by name, as they would be made on one table ("ON ONLY" is how an index
    of a partitioned table is written)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text, replace(pg_get_indexdef(indexrelid), ' ON ONLY ', ' ON ') "
            "FROM pg_index WHERE indrelid = 'telemetry_healthcheck'::regclass"
        )
        return dict(cursor.fetchall())


def migrate(target: list[tuple[str, str]]) -> None:
    MigrationExecutor(connection).migrate(target)


def test_the_migration_partitions_the_table_keeping_its_rows_indexes_and_constraints():
    now = timezone.now()
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("telemetry")
    migrate([("telemetry", "0002_health_check_metrics")])
    assert partitioning() is None
    device = DeviceFactory()
    # Saved bare: at 0002 the rollups the factory also writes do not exist yet.
    recent, old = (
        HealthCheckFactory.build(device=device, received_at=now - hours * HOUR) for hours in (1, 1000)
    )
    recent.save()
    old.save()
    check_foreign_keys_now()
    before = (constraints(), indexes())

    migrate(latest)

    assert partitioning() == ("r", ["device_time"])
    assert partition_of(recent.device_time) != DEFAULT
    assert partition_of(old.device_time) == DEFAULT
    current = partitions.slot_start(now)
    assert (current, current + HOUR) in ranges(since=current)
    assert ranges(since=now)[-1][1] == current + 5 * HOUR
    assert set(HealthCheck.objects.values_list("id", flat=True)) == {recent.id, old.id}
    assert HealthCheckFactory(device=device).id > old.id
    pkey = "telemetry_healthcheck_pkey"
    assert constraints() == {**before[0], pkey: "PRIMARY KEY (id, device_time)"}
    assert indexes() == {**before[1], pkey: before[1][pkey].replace("(id)", "(id, device_time)")}
    assert {index.name for index in HealthCheck._meta.indexes} < indexes().keys()
