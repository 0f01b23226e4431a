"""The scale benchmark's world (tests.benchmarks.scale), built with set-based SQL on PostgreSQL.

A fleet split into rings by settings.SAFEROLL_RING_SHARES, at sites of about 150 devices in three
regions, on a few hardware variants; one active rollout per ring, of its own release, whose current
ring that is; and the health checks of the window. The catalogue rows (releases, the plan, the
rollouts themselves) go through SafeRoll's services; the bulk rows (devices, deployments, checks)
are written by INSERT … SELECT generate_series, never one ORM object at a time.

How four rollouts are active at once: a device live in one active rollout is busy for the others,
so each was started while the rings before its own were taken by the rollouts under way there, and
deployed only its current ring. Every device of a ring runs its rollout's release, activated well
before the window; every check a device sends reports that version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from devices.models import HardwareVariant
from rollouts.choices import RolloutStatus
from rollouts.gates import GateConfig
from rollouts.models import Rollout
from rollouts.services import lifecycle, plans, releases
from saferoll.core.management.commands.adduser import user_ensure_role
from telemetry.health import BOOT_SUCCESS_CRITICAL, CRASH_FREE_CRITICAL

STABLE_VERSION = "10.9.0"
VARIANTS = ("tv-32-2019", "tv-43-2021", "tv-43-2023", "tv-55-2024")
REGIONS = ("eu", "na", "apac")
PLAN_NAME = "scale-bench"
# Every stage bakes a day and waits for a person: the autopilot judges every round and never
# advances a rollout, so the rounds the benchmark repeats all find the same world.
BAKE_MINUTES = 24 * 60
# The window of the gates' defaults (the benchmark's plan keeps them) and of GET /api/health/ring.
WINDOW = dt.timedelta(minutes=GateConfig().window_minutes)
# The checks of the window are received over this span before the anchor: the benchmark's clock
# may move on by the difference and still see them all in the window.
CHECK_SPAN = dt.timedelta(minutes=4, seconds=15)
# When the rollouts were created, and when each targeted its ring: long before the window.
CREATED_BEFORE = dt.timedelta(hours=3)
TARGETED_BEFORE = dt.timedelta(hours=2)


@dataclass(frozen=True)
class FleetSize:
    devices: int = 1_000_000
    checks_per_device: int = 10
    devices_per_site: int = 150


@dataclass
class World:
    """What build_world made: the rollouts by their current ring (in rollout order), and a person
    with the release manager's role to call the API and the portal as."""

    size: FleetSize
    anchor: dt.datetime
    rollouts: dict[str, Rollout]
    user: AbstractBaseUser
    token: str
    checks: int = 0
    devices_by_ring: dict[str, int] = field(default_factory=dict)

    @property
    def rings(self) -> list[str]:
        return list(self.rollouts)


def build_world(*, size: FleetSize, anchor: dt.datetime) -> World:
    """The fleet, its releases and its rollouts, ready for the checks (load_health_checks). The
    services date what they write by Django's clock: callers hold it at `anchor - CREATED_BEFORE`."""
    rings = plans.fleet_rings()
    variants = [HardwareVariant.objects.get_or_create(name=name)[0].pk for name in VARIANTS]
    person = user_ensure_role(username="scale-bench", role="release_manager", actor="bench")
    stable = releases.release_create(version=STABLE_VERSION, actor=person.user, is_stable=True)
    versions = {ring: f"11.{index}.0" for index, ring in enumerate(rings)}
    _insert_devices(size=size, anchor=anchor, variants=variants, versions=versions)
    plan = plans.plan_create(
        actor=person.user,
        name=PLAN_NAME,
        description="Every ring bakes a day and is promoted by a person; the gates are the defaults.",
        stages=[{"ring": ring, "bake_minutes": BAKE_MINUTES, "auto_advance": False} for ring in rings],
    )
    rollouts = {}
    for ring, version in versions.items():
        release = releases.release_create(version=version, actor=person.user, previous_release=stable)
        rollout = lifecycle.rollout_create(release=release, plan=plan, actor=person.user)
        rollouts[ring] = _activate_in(
            rollout, ring=ring, since=anchor - TARGETED_BEFORE, devices=size.devices
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT ring, count(*) FROM devices_device GROUP BY ring")
        counts = dict(cursor.fetchall())
    return World(
        size=size,
        anchor=anchor,
        rollouts=rollouts,
        user=person.user,
        token=person.token,
        devices_by_ring={ring: counts.get(ring, 0) for ring in rings},
    )


@contextmanager
def bulk_writes() -> Iterator[CursorWrapper]:
    """A transaction for one bulk INSERT: its commit does not wait for the WAL to be flushed and,
    when the database user may (a superuser), the foreign keys are not checked row by row (half the
    time of a load): the rows only reference rows this module has just written."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SHOW is_superuser")
        if cursor.fetchone()[0] == "on":
            cursor.execute("SET LOCAL session_replication_role = replica")
        yield cursor


def _ring_case(shares: dict[str, float], column: str) -> tuple[str, list]:
    """A CASE expression giving the ring of a device from `column`, uniform in [0, 1)."""
    whens, params = [], []
    bound = 0.0
    *first, last = shares
    for ring in first:
        bound += shares[ring] / 100
        whens.append(f"WHEN {column} < %s THEN %s")
        params += [bound, ring]
    return f"CASE {' '.join(whens)} ELSE %s END", [*params, last]


def _insert_devices(
    *, size: FleetSize, anchor: dt.datetime, variants: list[int], versions: dict[str, str]
) -> None:
    """Devices numbered 0..n-1: consecutive numbers share a site, the ring is drawn from a hash of
    the number by the configured shares (so every site has devices of every ring), and each runs
    its ring's rollout's release. All online, heard from in the last 20 seconds, with a credential.

    Whatever is indexed grows with the device number (heartbeats at each device's own phase, a
    credential hash nobody presents), so each index is written at one end: written in random order,
    indexes larger than the buffer cache make a bulk load many times slower."""
    ring_case, ring_params = _ring_case(
        dict(settings.SAFEROLL_RING_SHARES), "(hashint4(n) & 2147483647) / 2147483648.0"
    )
    version_case = "CASE ring " + " ".join("WHEN %s THEN %s" for _ in versions) + " END"
    version_params = [value for pair in versions.items() for value in pair]
    sql = f"""
        INSERT INTO devices_device (device_id, variant_id, site, region, ring, app_version,
            base_image_version, agent_version, status, status_reason, last_heartbeat, token_hash,
            token_issued_at, created_at)
        SELECT 'tv-' || lpad(n::text, 7, '0'), (%s::bigint[])[1 + n %% %s],
            'site-' || lpad((n / %s)::text, 5, '0'), (%s::text[])[1 + (n / %s) %% %s],
            ring, {version_case}, 'image-2025.10', 'agent-3.2', 'online', '',
            %s - interval '20 seconds' * (1 - n::float / %s), lpad(to_hex(n), 64, '0'),
            %s - interval '30 days', %s - interval '30 days'
        FROM (SELECT n, {ring_case} AS ring FROM generate_series(0, %s::int - 1) AS n) AS numbered
    """
    params = [
        variants,
        len(variants),
        size.devices_per_site,
        list(REGIONS),
        size.devices_per_site,
        len(REGIONS),
        *version_params,
        anchor,
        size.devices,
        anchor,
        anchor,
        *ring_params,
        size.devices,
    ]
    with bulk_writes() as cursor:
        cursor.execute(sql, params)


def _activate_in(rollout: Rollout, *, ring: str, since: dt.datetime, devices: int) -> Rollout:
    """The rollout active in `ring`, with every device of that ring targeted at `since` and
    activated within the half hour after it, in device order (all long enough ago to be expected
    to report)."""
    Rollout.objects.filter(pk=rollout.pk).update(
        status=RolloutStatus.ACTIVE, current_ring=ring, started_at=since, stage_started_at=since
    )
    with bulk_writes() as cursor:
        cursor.execute(
            """
            INSERT INTO rollouts_devicedeployment (rollout_id, device_id, ring, state, from_version,
                attempts, released_at, last_error, diagnostics, created_at, state_changed_at,
                downloading_at, verified_at, activated_at)
            SELECT %(rollout)s, id, ring, 'activated', %(stable)s, 1, %(since)s, '', '', %(since)s, activated,
                activated - interval '3 minutes', activated - interval '1 minute', activated
            FROM (SELECT d.id, d.ring,
                      %(since)s + interval '5 minutes' + interval '25 minutes' * (d.id - first.id) / %(devices)s
                          AS activated
                  FROM devices_device d, (SELECT min(id) AS id FROM devices_device) AS first
                  WHERE d.ring = %(ring)s) AS targeted
            ORDER BY id
            """,
            {
                "rollout": rollout.pk,
                "stable": STABLE_VERSION,
                "since": since,
                "devices": devices,
                "ring": ring,
            },
        )
    return Rollout.objects.select_related("release").get(pk=rollout.pk)


def load_health_checks(world: World, *, slots: Iterable[int]) -> int:
    """Write the health checks of the window: one per device for each of `slots` (0 is the oldest,
    `checks_per_device - 1` ends at the anchor). Returns the number written.

    The only place the benchmark writes health data: the per-minute rollups and each device's
    state, which ingestion writes with the checks, are summed from the same rows (_load_rollups).

    Each device reports once per slot at a phase of its own, in device order, so a slot's checks
    are inserted in receive order and in (device, time) order at once: every index of the table
    grows at one place, instead of at random places of an index far larger than the buffer cache
    (which made the load several times slower).

    Mostly healthy, like a fleet on releases that work: 0.5 % of checks with a crash-free rate of
    90–95 % (the rest 99–100 %), 0.1 % failed boots, check-in latency around 130 ms with a long
    tail and 0.5 % slow checks of 0.6–1.5 s; availability, event lag and dropped events filled in."""
    step = CHECK_SPAN / world.size.checks_per_device
    start = world.anchor - CHECK_SPAN
    written = 0
    for slot in slots:
        with bulk_writes() as cursor:
            cursor.execute(
                """
                INSERT INTO telemetry_healthcheck (device_id, ring, version, boot_ok, crash_free,
                    checkin_latency_ms, availability, event_lag_ms, dropped_events, metrics,
                    device_time, received_at)
                SELECT id, ring, app_version, random() >= 0.001,
                    CASE WHEN random() < 0.005 THEN 0.90 + random() * 0.05 ELSE 0.99 + random() * 0.01 END,
                    CASE WHEN random() < 0.005 THEN 600 + (random() * 900)::int
                         ELSE round(40 + 90 * exp(0.78 * (random() + random() + random() + random() - 2)))::int
                    END,
                    0.995 + random() * 0.005, (10 + random() * 190)::int, (random() < 0.02)::int, '{}'::jsonb,
                    -- A device clock a little behind, by the same amount for each device.
                    received - (id %% 2000) * interval '1 millisecond', received
                FROM (SELECT d.id, d.ring, d.app_version,
                          %(start)s + (%(slot)s + (d.id - first.id + random() * 0.5) / %(devices)s) * %(step)s AS received
                      FROM devices_device d, (SELECT min(id) AS id FROM devices_device) AS first) AS due
                ORDER BY id
                """,
                {"start": start, "slot": slot, "step": step, "devices": world.size.devices},
            )
            written += cursor.rowcount
    world.checks += written
    _load_rollups()
    return written


def _load_rollups() -> None:
    """Sum the raw checks just written into the per-minute rollups and each device's newest
    state, as ingestion would have (telemetry.rollups), in set-based SQL. It relies on this
    world's shape: a device reports one version, that of the rollout stage that targeted it, so
    each device's checks fall in one group."""
    tables = "telemetry_healthminutevalue, telemetry_healthminutemetric, telemetry_devicecheckstate, telemetry_healthminute"
    thresholds = {"crash": CRASH_FREE_CRITICAL, "boot": BOOT_SUCCESS_CRITICAL}
    with bulk_writes() as cursor:
        # Summed afresh from every check of the window, so a second load adds to the first.
        cursor.execute(f"TRUNCATE {tables}")
        cursor.execute(
            """
            CREATE TEMPORARY TABLE bench_targeting ON COMMIT DROP AS
            SELECT DISTINCT ON (dd.device_id) dd.device_id, dd.rollout_id, dd.ring AS stage, rel.version,
            dd.created_at
            FROM rollouts_devicedeployment dd
            JOIN rollouts_rollout r ON r.id = dd.rollout_id
            JOIN rollouts_release rel ON rel.id = r.release_id
            ORDER BY dd.device_id, dd.created_at DESC
            """,
        )
        cursor.execute(
            """
            CREATE TEMPORARY TABLE bench_checks ON COMMIT DROP AS
            SELECT c.device_id, c.ring, c.version, c.received_at, date_trunc('minute', c.received_at) AS minute,
            c.crash_free, c.boot_ok::int AS booted, c.checkin_latency_ms AS latency, c.event_lag_ms AS lag,
            c.availability, c.dropped_events,
            CASE WHEN t.created_at <= c.received_at THEN t.rollout_id END AS rollout_id,
            CASE WHEN t.created_at <= c.received_at THEN t.stage ELSE '' END AS stage
            FROM telemetry_healthcheck c
            LEFT JOIN bench_targeting t ON t.device_id = c.device_id AND t.version = c.version
            """,
        )
        cursor.execute(
            """
            INSERT INTO telemetry_healthgroup (ring, version, rollout_id, stage)
            SELECT DISTINCT ring, version, rollout_id, stage FROM bench_checks ON CONFLICT DO NOTHING
            """,
        )
        cursor.execute(
            """
            CREATE TEMPORARY TABLE bench_keyed ON COMMIT DROP AS
            SELECT g.id AS group_id, c.* FROM bench_checks c
            JOIN telemetry_healthgroup g ON g.ring = c.ring AND g.version = c.version
            AND g.rollout_id IS NOT DISTINCT FROM c.rollout_id AND g.stage = c.stage
            """,
        )
        # Each device's checks of each minute, and each device's newest minute.
        cursor.execute(
            """
            CREATE TEMPORARY TABLE bench_device_minutes ON COMMIT DROP AS
            SELECT group_id, device_id, minute, count(*) AS checks, sum(crash_free) AS crash_free,
            sum(latency) AS latency, sum(booted) AS booted, max(received_at) AS last_at,
            (sum(crash_free) / count(*) < %(crash)s OR sum(booted)::float / count(*) < %(boot)s)::int
            AS critical
            FROM bench_keyed GROUP BY group_id, device_id, minute
            """,
            thresholds,
        )
        cursor.execute(
            """
            CREATE TEMPORARY TABLE bench_newest ON COMMIT DROP AS
            SELECT DISTINCT ON (device_id) * FROM bench_device_minutes ORDER BY device_id, minute DESC
            """,
        )
        cursor.execute(
            """
            INSERT INTO telemetry_healthminute (group_id, minute, checks, crash_free_sum, booted,
            availability_sum, availability_count, dropped_sum, dropped_count, devices, ring_devices,
            minute_devices, minute_ring_devices, device_crash_rate_sum, device_crash_rate_squares,
            device_latency_sum, device_latency_squares, critical_devices)
            SELECT s.group_id, s.minute, s.checks, s.crash_free, s.booted, s.availability, s.with_availability,
            s.dropped, s.with_dropped, coalesce(n.devices, 0), coalesce(n.devices, 0),
            d.devices, d.devices, d.crash_rates, d.crash_rate_squares, d.latencies, d.latency_squares,
            coalesce(n.critical, 0)
            FROM (SELECT group_id, minute, count(*) AS checks, sum(crash_free) AS crash_free, sum(booted) AS booted,
            coalesce(sum(availability), 0) AS availability, count(availability) AS with_availability,
            coalesce(sum(dropped_events), 0) AS dropped, count(dropped_events) AS with_dropped
            FROM bench_keyed GROUP BY group_id, minute) s
            JOIN (SELECT group_id, minute, count(*) AS devices,
            sum(1 - crash_free / checks) AS crash_rates, sum((1 - crash_free / checks) ^ 2) AS crash_rate_squares,
            sum(latency::float / checks) AS latencies, sum((latency::float / checks) ^ 2) AS latency_squares
            FROM bench_device_minutes GROUP BY group_id, minute) d USING (group_id, minute)
            LEFT JOIN (SELECT group_id, minute, count(*) AS devices, sum(critical) AS critical
            FROM bench_newest GROUP BY group_id, minute) n USING (group_id, minute)
            """,
        )
        cursor.execute(
            """
            INSERT INTO telemetry_healthminutevalue (group_id, minute, measure, value, count)
            SELECT group_id, minute, 'latency', latency, count(*) FROM bench_keyed GROUP BY group_id, minute, latency
            UNION ALL
            SELECT group_id, minute, 'event_lag', lag, count(*) FROM bench_keyed WHERE lag IS NOT NULL
            GROUP BY group_id, minute, lag
            """,
        )
        cursor.execute(
            """
            INSERT INTO telemetry_devicecheckstate (device_id, group_id, last_check_at, minute_checks,
            minute_crash_free_sum, minute_latency_sum, minute_booted)
            SELECT device_id, group_id, last_at, checks, crash_free, latency, booted FROM bench_newest
            """,
        )
        # Dropped here as well as at commit: the benchmark's test runs inside one transaction.
        cursor.execute(
            "DROP TABLE bench_targeting, bench_checks, bench_keyed, bench_device_minutes, bench_newest"
        )


# The tables the benchmark fills in bulk.
STATISTICS_TABLES = ("devices_device", "rollouts_devicedeployment", "telemetry_healthcheck")


def analyze() -> None:
    """Gather the planner's statistics on the tables the benchmark filled."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(STATISTICS_TABLES)}")


def statistics_state() -> str:
    """Whether the planner has statistics for the filled tables (and their partitions, if any):
    "none", "fresh" (analyzed, and under a tenth of the rows changed since) or "stale"."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT relname, last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL,
                n_mod_since_analyze, n_live_tup
            FROM pg_stat_user_tables WHERE relname LIKE ANY(%s)
            """,
            [[f"{table}%" for table in STATISTICS_TABLES]],
        )
        rows = cursor.fetchall()
    analyzed = [row for row in rows if row[1]]
    if not analyzed:
        return "none"
    if len(analyzed) == len(rows) and all(changed <= 0.1 * max(live, 1) for _, _, changed, live in rows):
        return "fresh"
    return "stale"
