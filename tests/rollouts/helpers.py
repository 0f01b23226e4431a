"""Helpers that make a ring look healthy or failing to the gates, as devices would."""

import datetime as dt

from django.utils import timezone

from rollouts.choices import DeploymentState
from rollouts.models import DeviceDeployment, Rollout
from telemetry.models import HealthCheck
from telemetry.rollups import rollups_rebuild
from tests.factories import HealthCheckFactory


def activate(
    rollout: Rollout, ring: str, *, ago: dt.timedelta = dt.timedelta(minutes=2)
) -> list[DeviceDeployment]:
    """Drive the ring's deployments to activated, long enough ago that the devices are due to report."""
    deployments = list(DeviceDeployment.objects.filter(rollout=rollout, ring=ring).select_related("device"))
    DeviceDeployment.objects.filter(pk__in=[d.pk for d in deployments]).update(
        state=DeploymentState.ACTIVATED, activated_at=timezone.now() - ago
    )
    return deployments


def report(
    rollout: Rollout,
    ring: str,
    *,
    crash_free: float = 0.995,
    boot_ok: bool = True,
    latency: int = 50,
    checks: int = 1,
):
    """Every device of the ring activates the release and sends `checks` health checks reporting
    it (a preset's minimum sample counts checks as well as devices), taken a second apart on the
    device's clock and received now."""
    deployments = activate(rollout, ring)
    now = timezone.now()
    for deployment in deployments:
        for second in range(checks):
            HealthCheckFactory(
                device=deployment.device,
                ring=deployment.device.ring,
                version=rollout.release.version,
                crash_free=crash_free,
                boot_ok=boot_ok,
                checkin_latency_ms=latency,
                received_at=now,
                device_time=now - dt.timedelta(seconds=second),
            )


def age_out_checks(*, older_by: dt.timedelta = dt.timedelta(hours=1)) -> None:
    """Move every stored health check out of the gate window, as time passing would."""
    HealthCheck.objects.update(received_at=timezone.now() - older_by)
    rollups_rebuild()
