"""Which devices a stage is compared with: the devices off the release at a small stage's own
sites, every device of the fleet off the release for a large stage (read from the rollups)."""

import pytest
from django.utils import timezone

from rollouts import selectors
from rollouts.gates import GateConfig
from tests.factories import DeviceDeploymentFactory, DeviceFactory, HealthCheckFactory, RolloutFactory

pytestmark = pytest.mark.django_db

CONFIG = GateConfig(baseline_min_sample=2)


@pytest.fixture
def world():
    """A pilot of two devices at St. Mary's on the release; three devices still on v2.0 there,
    healthy; four at Riverside, crashing."""
    rollout = RolloutFactory()
    version = rollout.release.version
    for _ in range(2):
        device = DeviceFactory(site="St. Mary's", app_version=version)
        DeviceDeploymentFactory(rollout=rollout, device=device, ring="pilot")
        HealthCheckFactory(device=device, crash_free=0.99)
    for _ in range(3):
        HealthCheckFactory(device=DeviceFactory(site="St. Mary's"), crash_free=0.999)
    for _ in range(4):
        HealthCheckFactory(device=DeviceFactory(site="Riverside", ring="ring_5"), crash_free=0.5)
    return rollout


def test_a_small_stage_is_compared_with_the_devices_at_its_own_sites(world):
    baseline = selectors.rollout_baseline(world, "pilot", config=CONFIG, now=timezone.now())

    assert (baseline.window.total_devices, baseline.window.expected_devices) == (3, 3)
    assert baseline.window.crash_free_rate == pytest.approx(0.999)
    assert baseline.recent.spread.devices == 3


def test_a_large_stage_is_compared_with_the_whole_fleet_off_the_release(world, monkeypatch):
    monkeypatch.setattr(selectors, "SITE_BASELINE_MAX_STAGE", 1)

    baseline = selectors.rollout_baseline(world, "pilot", config=CONFIG, now=timezone.now())

    assert (baseline.window.total_devices, baseline.window.expected_devices) == (7, 7)
    assert baseline.window.crash_free_rate == pytest.approx((3 * 0.999 + 4 * 0.5) / 7)
    assert baseline.recent.spread.devices == 7
    assert baseline.ring_recent.total_devices == 2


def test_too_few_devices_at_the_stages_sites_mean_the_whole_fleet(world):
    config = GateConfig(baseline_min_sample=4)

    baseline = selectors.rollout_baseline(world, "pilot", config=config, now=timezone.now())

    assert baseline.window.total_devices == 7
