"""`make bench`'s scale part (tests.benchmarks.scale), on a fleet small enough for the suite: the
world it builds is a healthy fleet whose rollouts pass every gate of the autopilot, and it reports
every figure.
The timings themselves belong to the benchmark."""

import pytest
from django.db import connection, transaction

from rollouts.choices import EvaluationSource, RolloutStatus
from rollouts.models import DeviceDeployment, Evaluation, Rollout
from telemetry.models import HealthCheck
from tests.benchmarks.scale import bench_database_url
from tests.benchmarks.scale_fleet import FleetSize
from tests.benchmarks.scale_measure import Report, Timing, run, time_limit

TIMINGS = [
    "scale.round_seconds",
    "scale.round_seconds_1m_checks",
    "scale.evaluation_seconds.pilot",
    "scale.evaluation_seconds.ring_5",
    "scale.evaluation_seconds.ring_25",
    "scale.evaluation_seconds.ring_100",
    "scale.ring_health_api_seconds",
    "scale.should_promote_seconds",
    "scale.rollout_page_seconds",
    "scale.deploy_700k_seconds",
    "scale.rollback_1m_seconds",
]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="The benchmark builds its fleet with PostgreSQL's SQL."
)
def test_it_builds_a_healthy_fleet_the_autopilot_judges_and_reports_every_figure(role_groups):
    # Statistics gathered after each load: without them a 2,000-device fleet takes a minute.
    report = run(
        size=FleetSize(devices=2000, checks_per_device=10), runs=1, analyze_after_load=True, say=print
    )

    # With every check loaded, every gate passed on every ring: what is left is the plan's day of
    # bake before a person promotes.
    judged = Evaluation.objects.filter(source=EvaluationSource.AUTOPILOT).order_by("created_at", "id")
    last_judgements = {
        evaluation.ring: (evaluation.action, evaluation.reason.split(":")[0]) for evaluation in judged
    }
    assert last_judgements == {
        "pilot": ("WAIT", "Baking"),
        "ring_5": ("WAIT", "Baking"),
        "ring_25": ("WAIT", "Baking"),
        "ring_100": ("WAIT", "Baking"),
    }
    assert HealthCheck.objects.count() == 20_000
    # The widest rollout went back to free its ring; the one before it went there, and back.
    assert {
        rollout.release.version: (rollout.current_ring, rollout.status)
        for rollout in Rollout.objects.select_related("release")
    } == {
        "11.0.0": ("pilot", RolloutStatus.ACTIVE),
        "11.1.0": ("ring_5", RolloutStatus.ACTIVE),
        "11.2.0": ("ring_100", RolloutStatus.ROLLED_BACK),
        "11.3.0": ("ring_100", RolloutStatus.ROLLED_BACK),
    }
    promoted = Rollout.objects.get(release__version="11.2.0")
    ring_100_devices = report.figures["scale.deploy_700k_devices"]["value"]
    assert (
        DeviceDeployment.objects.filter(rollout=promoted, ring="ring_100").count() == ring_100_devices > 1000
    )
    assert report.figures["scale.rollback_1m_deployments"]["value"] == promoted.deployments.count()
    assert report.figures["scale.checks_in_window"]["value"] == 20_000
    for name in TIMINGS:
        assert report.figures[name]["unit"] == "s"
        assert ("value" in report.figures[name]) and ("ceiling" in report.figures[name])
    assert {"scale.deploy_700k_rss_mb", "scale.peak_rss_mb", "scale.round_growth_1m_to_10m_checks"} <= set(
        report.figures
    )
    assert any(note.startswith("statistics when the reads were measured: fresh") for note in report.notes)


def test_it_uses_a_database_of_its_own_on_the_configured_server(monkeypatch):
    monkeypatch.delenv("BENCH_SCALE_DATABASE", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://bench@db.example:5433/saferoll")
    assert bench_database_url() == "postgres://bench@db.example:5433/saferoll_bench_scale"

    monkeypatch.setenv("BENCH_SCALE_DATABASE", "elsewhere")
    assert bench_database_url() == "postgres://bench@db.example:5433/elsewhere"


def test_without_a_postgresql_server_configured_it_uses_the_local_one(monkeypatch):
    monkeypatch.delenv("BENCH_SCALE_DATABASE", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert bench_database_url() == "postgres://postgres@127.0.0.1:5432/saferoll_bench_scale"


def test_a_statement_past_the_time_limit_is_cancelled_and_the_measurement_says_so(db):
    finished = False
    with time_limit(0.2) as cutoff, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(30)")
        finished = True

    assert cutoff.fired and not finished


def test_a_figure_cut_off_or_skipped_says_so_beside_its_ceiling():
    report = Report()
    report.timing("scale.cut", Timing(None, 30.0), ceiling=Timing(2.5, 120.0))
    report.timing("scale.skipped", Timing(None, 30.0, skipped=True), ceiling=Timing(2.5, 120.0))
    report.timing("scale.measured", Timing(5.0, 30.0), ceiling=Timing(2.5, 120.0))

    assert report.figures == {
        "scale.cut": {"value": None, "unit": "s", "ceiling": 2.5, "timed_out_after": 30.0},
        "scale.skipped": {
            "value": None,
            "unit": "s",
            "ceiling": 2.5,
            "timed_out_after": 30.0,
            "skipped": True,
        },
        "scale.measured": {"value": 5.0, "unit": "s", "ceiling": 2.5, "ratio": 2.0},
    }
