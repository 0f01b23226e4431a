from django.db import models


class RolloutStatus(models.TextChoices):
    """Where a rollout is; while ACTIVE its public `state` is the name of its current ring."""

    CREATED = "created", "Created"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    ROLLED_BACK = "rolled_back", "Rolled back"


TERMINAL_STATUSES = (RolloutStatus.COMPLETED, RolloutStatus.ROLLED_BACK)
RESERVED_RING_NAMES = {status.value for status in RolloutStatus}


class RolloutAction(models.TextChoices):
    """The actions of a rollout's event timeline (000 §6.3), as people and the autopilot take them."""

    CREATED = "CREATED"
    START = "START"
    PROMOTE = "PROMOTE"
    PAUSE = "PAUSE"
    RESUME = "RESUME"
    ROLLBACK = "ROLLBACK"
    COMPLETED = "COMPLETED"
    AUTO_PROMOTE = "AUTO_PROMOTE"
    AUTO_PAUSE = "AUTO_PAUSE"
    AUTO_ROLLBACK = "AUTO_ROLLBACK"
    # A person went past the gates' verdict with a reason (a PROMOTE or RESUME follows it).
    OVERRIDE = "OVERRIDE"


class DeploymentState(models.TextChoices):
    """One device's progress through one rollout (002 B7)."""

    PENDING = "pending", "Pending"
    DOWNLOADING = "downloading", "Downloading"
    VERIFIED = "verified", "Verified"
    ACTIVATED = "activated", "Activated"
    FAILED = "failed", "Failed"
    ROLLING_BACK = "rolling_back", "Rolling back"
    ROLLED_BACK = "rolled_back", "Rolled back"
    CANCELLED = "cancelled", "Cancelled"


# Steps a device may report, and the states each may follow.
DEPLOYMENT_STEPS: dict[str, tuple[str, ...]] = {
    DeploymentState.DOWNLOADING: (DeploymentState.PENDING, DeploymentState.DOWNLOADING),
    DeploymentState.VERIFIED: (DeploymentState.DOWNLOADING, DeploymentState.VERIFIED),
    DeploymentState.ACTIVATED: (DeploymentState.VERIFIED, DeploymentState.ACTIVATED),
    DeploymentState.FAILED: (DeploymentState.PENDING, DeploymentState.DOWNLOADING, DeploymentState.VERIFIED),
    DeploymentState.ROLLED_BACK: (DeploymentState.ROLLING_BACK, DeploymentState.ROLLED_BACK),
}
# States in which the device has received the release: they make up the blast radius.
EXPOSED_STATES = (
    DeploymentState.DOWNLOADING,
    DeploymentState.VERIFIED,
    DeploymentState.ACTIVATED,
    DeploymentState.FAILED,
    DeploymentState.ROLLING_BACK,
    DeploymentState.ROLLED_BACK,
)
LIVE_DEPLOYMENT_STATES = (
    DeploymentState.PENDING,
    DeploymentState.DOWNLOADING,
    DeploymentState.VERIFIED,
    DeploymentState.ACTIVATED,
    DeploymentState.ROLLING_BACK,
)


class EvaluationSource(models.TextChoices):
    AUTOPILOT = "autopilot", "Autopilot"
    REQUEST = "request", "Request"


class IncidentSeverity(models.TextChoices):
    SEV1 = "sev1", "Sev1 (critical)"
    SEV2 = "sev2", "Sev2 (major)"
    SEV3 = "sev3", "Sev3 (minor)"


class IncidentStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"
