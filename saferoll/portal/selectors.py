"""Fleet-wide reads shared by the API root and the portal."""

from devices.models import Device
from rollouts.choices import RolloutStatus
from rollouts.models import Rollout


def fleet_counts() -> dict[str, int]:
    """The two figures of the root status (000 §5.4): rollouts going out now, and devices known."""
    return {
        # A paused rollout is not going out, so it is not counted as active.
        "active_rollouts": Rollout.objects.filter(status=RolloutStatus.ACTIVE).count(),
        "total_devices": Device.objects.count(),
    }
