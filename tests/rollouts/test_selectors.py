"""What the gates are given for a rollout's ring: only checks sent after this rollout activated
the release on each device."""

import datetime as dt

import pytest
from django.utils import timezone

from rollouts.selectors import rollout_ring_health
from tests.factories import HealthCheckFactory
from tests.rollouts.helpers import activate


def test_it_ignores_checks_of_the_same_version_from_before_this_rollout_activated_it(started):
    deployments = activate(started, "pilot", ago=dt.timedelta(minutes=2))
    earlier, now = timezone.now() - dt.timedelta(minutes=3), timezone.now()
    for deployment in deployments:
        # An earlier rollout of v2.1 crashed on this device, then was rolled back.
        HealthCheckFactory(
            device=deployment.device,
            ring="pilot",
            version="v2.1",
            boot_ok=False,
            crash_free=0.5,
            received_at=earlier,
        )
        HealthCheckFactory(
            device=deployment.device, ring="pilot", version="v2.1", crash_free=0.995, received_at=now
        )

    health = rollout_ring_health(started, "pilot")

    assert health.checks == len(deployments) == health.total_devices
    assert health.boot_success_rate == 1.0 and health.crash_free_rate == pytest.approx(0.995)


def test_it_counts_no_check_of_a_device_that_has_not_activated(started):
    for deployment in started.deployments.filter(ring="pilot").select_related("device"):
        HealthCheckFactory(device=deployment.device, ring="pilot", version="v2.1")

    assert rollout_ring_health(started, "pilot").checks is None
