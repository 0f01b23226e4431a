"""What the gates are given for a rollout's ring: the checks of its version that each targeted
device sent after this rollout targeted it."""

import datetime as dt

import pytest
from django.utils import timezone

from rollouts.selectors import rollout_deployment_summary, rollout_ring_health
from tests.factories import HealthCheckFactory
from tests.rollouts.helpers import activate


def test_it_ignores_checks_of_the_same_version_from_before_this_rollout_targeted_the_device(started):
    deployments = activate(started, "pilot", ago=dt.timedelta(minutes=2))
    earlier = started.deployments.earliest("created_at").created_at - dt.timedelta(minutes=1)
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
        HealthCheckFactory(device=deployment.device, ring="pilot", version="v2.1", crash_free=0.995)

    health = rollout_ring_health(started, "pilot")

    assert health.checks == len(deployments) == health.total_devices
    assert health.boot_success_rate == 1.0 and health.crash_free_rate == pytest.approx(0.995)


def test_it_counts_a_devices_checks_before_its_activation_report_arrives(started, fleet):
    # The device runs v2.1 and says so in its checks; its `activated` report is still queued.
    for deployment in started.deployments.filter(ring="pilot").select_related("device"):
        HealthCheckFactory(device=deployment.device, ring="pilot", version="v2.1", received_at=timezone.now())
    # A device this rollout did not target says nothing about it, whatever it runs.
    HealthCheckFactory(device=fleet["ring_5"][0], ring="pilot", version="v2.1", boot_ok=False)

    health = rollout_ring_health(started, "pilot")

    assert health.total_devices == len(fleet["pilot"]) and health.boot_success_rate == 1.0


def test_the_deployment_summary_lists_every_ring_and_gives_the_blast_radius_as_shares(started, fleet):
    activate(started, "pilot")

    summary = rollout_deployment_summary(started)

    pilot = len(fleet["pilot"])
    fleet_size = sum(len(devices) for devices in fleet.values())
    assert summary.by_ring["pilot"] == {"targeted": pilot, "exposed": pilot, "released": pilot}
    assert summary.by_ring["ring_100"] == {"targeted": 0, "exposed": 0, "released": 0}
    assert summary.blast_radius() == {
        "exposed": pilot,
        "targeted": pilot,
        "fleet": fleet_size,
        "spared": fleet_size - pilot,
    }
    assert summary.exposed_share == round(100 * pilot / fleet_size, 1)
    assert summary.spared_share == round(100 * (fleet_size - pilot) / fleet_size, 1)
