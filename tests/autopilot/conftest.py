import datetime as dt

import pytest
from django.utils import timezone

from rollouts.choices import DeploymentState
from rollouts.gates import GateConfig
from rollouts.models import Rollout
from rollouts.services import lifecycle
from tests.factories import DeviceFactory, HealthCheckFactory, ReleaseFactory, RolloutPlanFactory

LONG_AGO = dt.timedelta(minutes=10)


def activate_ring(rollout: Rollout, ring: str, *, at: dt.datetime) -> None:
    """Every device the rollout targeted in `ring` activated the release at `at`."""
    deployments = rollout.deployments.filter(ring=ring)
    deployments.update(state=DeploymentState.ACTIVATED, activated_at=at, state_changed_at=at)
    for deployment in deployments.select_related("device"):
        deployment.device.app_version = rollout.release.version
        deployment.device.save(update_fields=["app_version"])


def report(
    rollout: Rollout,
    ring: str,
    *,
    crash_free: float,
    boot_ok: bool = True,
    at: dt.datetime,
    count: int | None = None,
):
    """One health check per targeted device of `ring` (or the first `count`), on the release's version."""
    deployments = rollout.deployments.filter(ring=ring).select_related("device")
    for deployment in list(deployments)[:count]:
        HealthCheckFactory(
            device=deployment.device,
            version=rollout.release.version,
            crash_free=crash_free,
            boot_ok=boot_ok,
            received_at=at,
            device_time=at,
        )


@pytest.fixture
def fleet(db):
    """20 pilot and 20 ring_5 devices on v2.0."""
    return [DeviceFactory(ring="pilot") for _ in range(20)] + [
        DeviceFactory(ring="ring_5") for _ in range(20)
    ]


@pytest.fixture
def make_rollout(fleet):
    """A started rollout of a fresh release whose pilot devices run it since long ago."""

    def make(*, auto_advance: bool = False, bake_minutes: int = 0, **gates) -> Rollout:
        stages = [
            {"ring": ring, "bake_minutes": bake_minutes, "auto_advance": auto_advance}
            for ring in ("pilot", "ring_5", "ring_25", "ring_100")
        ]
        config = GateConfig.from_dict(
            {"min_sample": 10, "min_checks": 10, "consecutive_failures_to_pause": 3, **gates}
        )
        plan = RolloutPlanFactory(
            name=f"plan-{auto_advance}-{bake_minutes}-{abs(hash(config)) % 10**8}",
            stages=stages,
            gate_config=config.to_dict(),
        )
        release = ReleaseFactory(previous_release=ReleaseFactory(version="v2.0", is_stable=True))
        rollout = lifecycle.rollout_create(release=release, plan=plan, actor=None)
        rollout = lifecycle.rollout_start(rollout=rollout, actor=None)
        activate_ring(rollout, "pilot", at=timezone.now() - LONG_AGO)
        Rollout.objects.filter(pk=rollout.pk).update(stage_started_at=timezone.now() - LONG_AGO)
        rollout.refresh_from_db()
        return rollout

    return make
