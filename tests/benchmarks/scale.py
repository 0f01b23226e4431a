"""SafeRoll at fleet scale (issue 12): a 1,000,000-device fleet with 10,000,000 health checks in the
5-minute window and 4 active rollouts (current rings pilot, ring_5, ring_25 and ring_100), in a
PostgreSQL database of its own. Run with `make bench`, or `python -m tests.benchmarks.scale`.

It measures (each read as the median of 3 runs while its runs take under 5 s; the deploy and the
rollbacks once):
- one full autopilot round, as the beat runs it (rollouts.tasks.evaluate_active_rollouts, its live
  broadcast of every ring's health and each rollout's judgement, in-process), at 1M and at 10M
  checks in the window, and each rollout's judgement on its own;
- GET /api/health/ring/ring_100, GET /api/rollouts/<id>/should_promote and the portal's rollout
  page, for the ring_100 rollout;
- after that rollout is rolled back to free its devices, a person's promotion of the ring_25
  rollout into ring_100 (its audit event and live update included), which deploys to every ring_100
  device, with the process's peak memory during it; then the rollback of all that rollout's
  deployments. The figures keep the issue's names (deploy_700k, rollback_1m); at the default ring
  shares they are 600k devices and 850k deployments, which the table and the `_devices` and
  `_deployments` figures show;
- the process's peak resident memory.

Each comes with a ceiling: its work in hand-written SQL, measured in the same run (one pass over the
window for ring health, a join of the window to the deployments for a gate's health, without the
comparison with the previous release; INSERT … SELECT for the deploy, UPDATE for the rollback); for
memory and the round's growth, where no SQL does the same work, the issue's target. Figures go to
bench-results.json as `scale.*`.

The measurements start right after the bulk load, without ANALYZE: the autopilot judges a new ring
seconds after its rows are inserted. The output says whether the tables had statistics. A read is
cut off after 30 s, a ceiling after 2 minutes, the deploy and the rollbacks after 5, and reported
as timed out; a read that includes one cut off (the round includes every judgement) is skipped.

Environment: DATABASE_URL names the PostgreSQL server (else postgres@127.0.0.1:5432 with trust
auth); the benchmark drops and creates its own database there, <name>_bench_scale
(saferoll_bench_scale by default, BENCH_SCALE_DATABASE to choose), and drops it at the end unless
BENCH_KEEP_DATABASE=1. BENCH_QUICK=1 measures each figure once, at the same scale.
BENCH_ANALYZE=1 gathers statistics after each load, to compare. BENCH_SCALE_DEVICES and
BENCH_SCALE_CHECKS_PER_DEVICE change the scale (1,000,000 and 10).
"""

import os
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tests.benchmarks.merge import merge

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/saferoll"


def bench_database_url() -> str:
    """The benchmark's own database, on the server of DATABASE_URL when that is PostgreSQL."""
    configured = os.environ.get("DATABASE_URL", "")
    server = configured if configured.startswith(("postgres://", "postgresql://")) else DEFAULT_SERVER
    parts = urlsplit(server)
    name = os.environ.get("BENCH_SCALE_DATABASE") or f"{parts.path.lstrip('/') or 'saferoll'}_bench_scale"
    return urlunsplit(parts._replace(path=f"/{name}"))


def _maintenance(url: str) -> psycopg.Connection:
    return psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True)


def recreate_database(url: str) -> None:
    name = sql.Identifier(urlsplit(url).path.lstrip("/"))
    with _maintenance(url) as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        server.execute(sql.SQL("CREATE DATABASE {}").format(name))


def drop_database(url: str) -> None:
    with _maintenance(url) as server:
        name = sql.Identifier(urlsplit(url).path.lstrip("/"))
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def setup_django(url: str) -> None:
    """Point SafeRoll at the benchmark's database before its settings are read, and migrate it."""
    os.environ["DATABASE_URL"] = url
    # One plain connection, on which each measurement's time limit cancels statements.
    os.environ["SAFEROLL_DB_POOL"] = "false"
    os.environ.setdefault("SAFEROLL_SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("SAFEROLL_ENROLLMENT_KEY", "bench-only-enrollment-key")
    os.environ.setdefault("SAFEROLL_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saferoll.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def main() -> None:
    started = time.monotonic()
    quick = os.environ.get("BENCH_QUICK") == "1"
    url = bench_database_url()
    recreate_database(url)
    setup_django(url)
    # Django's models can be imported only once its settings are configured.
    from django.db import connections

    from tests.benchmarks.scale_fleet import FleetSize
    from tests.benchmarks.scale_measure import run

    size = FleetSize(
        devices=int(os.environ.get("BENCH_SCALE_DEVICES", "1000000")),
        checks_per_device=int(os.environ.get("BENCH_SCALE_CHECKS_PER_DEVICE", "10")),
    )
    print(f"scale: database {urlsplit(url).path.lstrip('/')}, {'1 run' if quick else '3 runs'} per figure")
    try:
        report = run(
            size=size,
            runs=1 if quick else 3,
            analyze_after_load=os.environ.get("BENCH_ANALYZE") == "1",
            say=lambda line: print(f"  {line}", flush=True),
        )
    finally:
        connections.close_all()
        if os.environ.get("BENCH_KEEP_DATABASE") != "1":
            drop_database(url)
    print()
    print(f"{'figure':<40} {'value':>22}   {'ceiling':<30} note")
    for row in report.rows:
        print(f"{row.name:<40} {row.shown:>22}   {row.ceiling:<30} {row.note}")
    for note in report.notes:
        print(note)
    merge(report.figures)
    print(
        f"{len(report.figures)} figures merged into bench-results.json; {time.monotonic() - started:.0f} s in all."
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
