"""Fixtures of the rollout tests: a small fleet in the demo rings, a release, a default plan, a
release manager, and a rollout created or started over them (tests/rollouts/helpers.py makes a
ring look healthy or failing)."""

import pytest

from rollouts.gates import GateConfig
from rollouts.models import Release, Rollout
from rollouts.services import lifecycle
from saferoll.core import roles
from tests.factories import DeviceFactory, ReleaseFactory, RolloutPlanFactory, UserFactory

# Per ring, how many devices the test fleet holds: enough for the minimum sample of 10.
FLEET = {"pilot": 20, "ring_5": 12, "ring_25": 15, "ring_100": 25}


@pytest.fixture
def plan(db):
    """The default plan: the four demo rings, no bake, gates of 000 §6.2 with a sample of 10."""
    return RolloutPlanFactory(
        name="test-plan", is_default=True, gate_config=GateConfig(min_sample=10, min_checks=10).to_dict()
    )


@pytest.fixture
def release(db) -> Release:
    return ReleaseFactory(version="v2.1")


@pytest.fixture
def fleet(db) -> dict[str, list]:
    """Devices on v2.0 in each demo ring."""
    return {
        ring: [DeviceFactory(ring=ring, device_id=f"{ring}-{index:03d}") for index in range(count)]
        for ring, count in FLEET.items()
    }


@pytest.fixture
def manager(db):
    return UserFactory(username="rm", role=roles.RELEASE_MANAGER)


@pytest.fixture
def rollout(plan, release, fleet, manager) -> Rollout:
    """A created rollout of v2.1 over the test fleet."""
    return lifecycle.rollout_create(release=release, plan=plan, actor=manager)


@pytest.fixture
def started(rollout, manager) -> Rollout:
    """The rollout, started: pending deployments in pilot."""
    return lifecycle.rollout_start(rollout=rollout, actor=manager)
