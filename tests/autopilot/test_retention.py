import datetime as dt
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.utils import timezone

from telemetry.models import HealthCheck, HealthMinute, HealthMinuteMetric, HealthMinuteValue
from telemetry.rollups import minute_of
from telemetry.services import health_checks_prune
from tests.factories import DeviceFactory, HealthCheckFactory

pytestmark = pytest.mark.django_db


def test_it_prunes_checks_older_than_the_retention_and_keeps_the_rest(settings):
    settings.SAFEROLL_HEALTH_RETENTION_HOURS = 24
    now = timezone.now()
    device = DeviceFactory()
    old = [
        HealthCheckFactory(device=device, received_at=now - dt.timedelta(hours=25, minutes=i))
        for i in range(5)
    ]
    recent = HealthCheckFactory(device=device, received_at=now - dt.timedelta(hours=23))

    assert health_checks_prune(now=now, batch=2) == len(old)
    assert health_checks_prune(now=now) == 0
    assert list(HealthCheck.objects.values_list("id", flat=True)) == [recent.id]


def test_it_keeps_the_rollups_longer_than_the_checks_and_then_prunes_them(settings):
    settings.SAFEROLL_HEALTH_RETENTION_HOURS = 24
    settings.SAFEROLL_HEALTH_ROLLUP_RETENTION_HOURS = 48
    now = timezone.now()
    device = DeviceFactory()
    for hours in (49, 30, 1):
        HealthCheckFactory(device=device, received_at=now - dt.timedelta(hours=hours), metrics={"fps": 30})

    health_checks_prune(now=now)

    kept = set(HealthMinute.objects.values_list("minute", flat=True))
    expected = {minute_of(now - dt.timedelta(hours=hours)) for hours in (30, 1)}
    assert kept == expected
    for model in (HealthMinuteValue, HealthMinuteMetric):
        assert set(model.objects.values_list("minute", flat=True)) == expected
    assert HealthCheck.objects.count() == 1


# The embedded default: its migrations leave the checks' table plain, and the prune deletes in batches.
EMBEDDED_PRUNE = """
import datetime as dt

import django

django.setup()
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from telemetry.models import HealthCheck
from telemetry.services import health_checks_prune
from tests.factories import HealthCheckFactory

call_command("migrate", verbosity=0)
now = timezone.now()
for hours in (80, 75, 73, 1):
    HealthCheckFactory(received_at=now - dt.timedelta(hours=hours))
print(connection.vendor, health_checks_prune(now=now, batch=2), HealthCheck.objects.count())
"""


def test_the_embedded_default_deletes_old_checks_in_batches(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}

    ran = subprocess.run(
        [sys.executable, "-c", EMBEDDED_PRUNE],
        env={**env, "DJANGO_SETTINGS_MODULE": "saferoll.settings", "SAFEROLL_STATE_DIR": str(tmp_path)},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["sqlite", "3", "1"]
