"""Fleet-wide reads shared by the API root and the portal."""

from devices.models import Device
from rollouts.choices import RolloutStatus
from rollouts.models import Rollout


def fleet_counts() -> dict[str, int]:
    return {
        "active_rollouts": Rollout.objects.filter(status=RolloutStatus.ACTIVE).count(),
        "total_devices": Device.objects.count(),
    }
