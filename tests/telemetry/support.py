"""Helpers shared by the telemetry tests."""

import datetime as dt

from rest_framework.test import APIClient

from tests.factories import device_token

NOW = dt.datetime(2025, 11, 18, 10, 30, tzinfo=dt.UTC)
# Marks a field to leave out of a payload.
OMIT = object()


def device_client(device) -> APIClient:
    """An API client that authenticates as `device` with its token, as a real device does."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Device {device_token(device)}")
    return client


def check(device_id: str, /, **overrides) -> dict:
    """A valid health check payload (000 §5.1) for `device_id`; OMIT leaves a field out."""
    payload = {
        "device_id": device_id,
        "ring": "pilot",
        "version": "v2.1",
        "boot_ok": True,
        "crash_free": 0.995,
        "checkin_latency_ms": 45,
        "timestamp": "2025-11-18T10:30:00Z",
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not OMIT}
