import hashlib
import secrets

from django.conf import settings
from django.db import models

from devices.choices import CohortKind, DeviceStatus


def hash_token(token: str) -> str:
    """Device tokens are long random strings, so a fast unsalted hash is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_device_token() -> str:
    return secrets.token_urlsafe(32)


class HardwareVariant(models.Model):
    """A hardware model of device; each release lists the variants it supports."""

    name = models.CharField(max_length=50, unique=True)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Device(models.Model):
    """One field device, known by its own id and authenticated by a hashed token."""

    # As `request.auth`, a device says it is one (saferoll.core.api.permissions.is_device_credential).
    is_device_credential = True

    device_id = models.CharField(max_length=50, unique=True)
    variant = models.ForeignKey(HardwareVariant, on_delete=models.PROTECT, null=True, blank=True)
    site = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=100, blank=True)
    ring = models.CharField(max_length=20, db_index=True)
    # The app version is what the REST contract calls "version".
    app_version = models.CharField(max_length=50, blank=True)
    base_image_version = models.CharField(max_length=50, blank=True)
    agent_version = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=20, choices=DeviceStatus, default=DeviceStatus.OFFLINE)
    status_reason = models.TextField(blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    # SHA-256 of the device's token; null when the credential has been revoked.
    token_hash = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    token_issued_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["device_id"]
        indexes = [models.Index(fields=["status", "last_heartbeat"])]
        permissions = [("manage_device_credentials", "Can rotate or revoke device credentials")]

    def __str__(self) -> str:
        return self.device_id

    @property
    def has_credential(self) -> bool:
        return bool(self.token_hash)


class Cohort(models.Model):
    """A named group of devices with explicit membership (canary, pilot or any)."""

    name = models.CharField(max_length=50, unique=True)
    kind = models.CharField(max_length=20, choices=CohortKind, default=CohortKind.CUSTOM)
    description = models.TextField(blank=True)
    devices = models.ManyToManyField(Device, through="CohortMembership", related_name="cohorts", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CohortMembership(models.Model):
    """One device in one cohort, with who put it there."""

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="memberships")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="memberships")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cohort", "device"], name="unique_cohort_device")]

    def __str__(self) -> str:
        return f"{self.device} in {self.cohort}"
