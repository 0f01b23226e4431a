import datetime as dt

import pytest
from django.utils import timezone

from telemetry.models import HealthCheck
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
