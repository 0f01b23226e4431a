"""Who may report and read health: the one place these rules live.

A device (``Authorization: Device <token>``) reports for itself only. A gateway (a person or
script holding ``telemetry.ingest_health``) reports for any known device. Reading aggregated
health takes the view permission every role has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rest_framework import permissions

from devices.models import Device

INGEST_PERMISSION = "telemetry.ingest_health"
VIEW_PERMISSION = "telemetry.view_healthcheck"

NOT_YOURS = "A device may only report its own health."
UNKNOWN_DEVICE = "No device with this id is enrolled."

# Only what ingestion reads, so a gateway's lookup of a thousand devices stays light.
_REPORTING_FIELDS = ("id", "device_id", "ring", "app_version", "status", "last_heartbeat")


class CanReportHealth(permissions.BasePermission):
    message = (
        "Reporting health takes a device credential ('Authorization: Device <token>') "
        "or the permission to report on behalf of devices."
    )
    admits_devices = True  # the schema offers the device credential (rollouts.api.protocol)

    def has_permission(self, request, view) -> bool:
        if isinstance(request.auth, Device):
            return True
        return bool(request.user and request.user.has_perm(INGEST_PERMISSION))


class CanReadHealth(permissions.BasePermission):
    message = "You do not have permission to read fleet health."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.has_perm(VIEW_PERMISSION))


def reporting_device(request) -> Device | None:
    """The device a request authenticated as, or None for a person or script."""
    return request.auth if isinstance(request.auth, Device) else None


@dataclass
class Reporters:
    """The devices a caller may report for, and why the other ids were refused."""

    devices: dict[str, Device] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)

    def refusal(self, device_id: str) -> str | None:
        if device_id in self.forbidden:
            return NOT_YOURS
        if device_id in self.unknown:
            return UNKNOWN_DEVICE
        return None


def resolve_reporters(*, device: Device | None, device_ids: Iterable[str]) -> Reporters:
    """Resolve the device ids a caller reports for, in at most one query.

    `device` is the caller when a device authenticated (then no query: it may only name itself);
    None means a gateway that already passed CanReportHealth."""
    wanted = set(device_ids)
    if device is not None:
        return Reporters(
            devices={device.device_id: device} if device.device_id in wanted else {},
            forbidden=wanted - {device.device_id},
        )
    if not wanted:
        return Reporters()
    found = {d.device_id: d for d in Device.objects.only(*_REPORTING_FIELDS).filter(device_id__in=wanted)}
    return Reporters(devices=found, unknown=wanted - set(found))
