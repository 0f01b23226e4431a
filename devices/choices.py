from django.db import models


class DeviceStatus(models.TextChoices):
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    INVESTIGATE = "investigate", "Flagged for investigation"


class CohortKind(models.TextChoices):
    CANARY = "canary", "Canary"
    PILOT = "pilot", "Pilot"
    CUSTOM = "custom", "Custom"
