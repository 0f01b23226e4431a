"""The per-minute rollups sum exactly what the raw checks say, on PostgreSQL and on SQLite."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from telemetry.models import HealthCheck, HealthMinute
from tests.telemetry.rollup_equivalence import build, differences

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(6))
def test_every_window_read_from_the_rollups_equals_the_raw_aggregate_on_postgresql(seed):
    assert differences(build(seed)) == []


def test_every_window_read_from_the_rollups_equals_the_raw_aggregate_on_sqlite(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env["SAFEROLL_STATE_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "tests.telemetry.rollup_equivalence", "0", "1", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 3 seeds equal" in result.stdout


@pytest.mark.django_db
def test_the_rebuild_command_sums_the_raw_checks_again():
    world = build(7)
    HealthMinute.objects.all().delete()
    stored = HealthCheck.objects.count()
    out = io.StringIO()

    call_command("rebuild_health_rollups", stdout=out)

    assert f"Summed {stored} health checks" in out.getvalue()
    assert differences(world) == []
