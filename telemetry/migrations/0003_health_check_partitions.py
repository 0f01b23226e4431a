"""PostgreSQL: raw health checks partitioned by RANGE (device_time), so that retention drops whole
partitions (telemetry/partitions.py) instead of deleting rows. SQLite keeps the plain table.

The table is rebuilt: a partitioned table LIKE the old one (columns, checks, identity), its DEFAULT
partition and partitions from the oldest check within the retention to a few ahead of now; the rows
copied across, each into its partition; then the primary key, the model's constraints and indexes
and the foreign key made on the whole table, under their old names. A unique constraint of a
partitioned table must contain the partition key, so the primary key becomes (id, device_time) in
the database. Django's state does not change: the model keeps id as its primary key (ids still come
from the one identity sequence), and the unique (device, device_time) constraint stays as it is.
"""

import datetime as dt

from django.conf import settings
from django.db import migrations
from django.utils import timezone

from telemetry import partitions

TABLE = "telemetry_healthcheck"
OLD = "telemetry_healthcheck_rebuilt"


def partition(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _rebuild(apps, schema_editor, partitioned=True)


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _rebuild(apps, schema_editor, partitioned=False)


def _rebuild(apps, schema_editor, *, partitioned):
    model = apps.get_model("telemetry", "HealthCheck")
    execute = schema_editor.execute
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('p', 'f')",
            [TABLE],
        )
        keys = cursor.fetchall()
    # Index names are unique in the schema: the old table's go before the new one's are made. The
    # rows are copied with one sequential read, which needs none of them.
    for constraint in model._meta.constraints:
        schema_editor.remove_constraint(model, constraint)
    for index in model._meta.indexes:
        schema_editor.remove_index(model, index)
    for name, kind, _ in keys:
        if kind == "p":
            execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {name}")
    execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
    execute(
        f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY "
        f"INCLUDING STORAGE INCLUDING COMMENTS)" + (" PARTITION BY RANGE (device_time)" if partitioned else "")
    )
    if partitioned:
        _make_partitions(schema_editor, execute)
    execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
    for name, kind, definition in keys:
        if kind == "p":
            columns = "id, device_time" if partitioned else "id"
            execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} PRIMARY KEY ({columns})")
        else:
            execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
    for constraint in model._meta.constraints:
        schema_editor.add_constraint(model, constraint)
    for index in model._meta.indexes:
        schema_editor.add_index(model, index)
    _move_sequence(schema_editor)


def _make_partitions(schema_editor, execute):
    """DEFAULT, and the partitions from the oldest check still within the retention (none older:
    the next prune would drop them) to a few ahead of now."""
    execute(f"CREATE TABLE {partitions.DEFAULT_PARTITION} PARTITION OF {TABLE} DEFAULT")
    now = timezone.now()
    cutoff = now - dt.timedelta(hours=settings.SAFEROLL_HEALTH_RETENTION_HOURS)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT min(device_time) FROM {OLD} WHERE device_time >= %s", [cutoff])
        oldest = cursor.fetchone()[0]
    partitions.health_partitions_make(now=now, since=min(oldest or now, now))


def _move_sequence(schema_editor):
    """The new table's identity goes on from the old one's, so no id is ever given twice; then
    the old table (and its sequence) goes, and the new sequence takes the usual name."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id'), pg_get_serial_sequence(%s, 'id')", [OLD, TABLE])
        old_sequence, sequence = cursor.fetchone()
        cursor.execute(f"SELECT setval(%s, last_value, is_called) FROM {old_sequence}", [sequence])
    schema_editor.execute(f"DROP TABLE {OLD}")
    schema_editor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {TABLE}_id_seq")


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0002_health_check_metrics"),
    ]

    operations = [
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
