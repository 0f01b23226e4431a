import pytest
from rest_framework.test import APIClient

from rollouts.choices import RolloutStatus
from tests.factories import DeviceFactory, ReleaseFactory, RolloutFactory, device_token

FLEET_KEY = "fleet-key-for-tests"


@pytest.fixture(autouse=True)
def devices_settings(settings):
    """A known fleet key and ring shares, and only the device routes (see tests/devices/urls.py)."""
    settings.ROOT_URLCONF = "tests.devices.urls"
    settings.SAFEROLL_ENROLLMENT_KEY = FLEET_KEY
    settings.SAFEROLL_RING_SHARES = {"pilot": 10, "ring_5": 5, "ring_25": 25, "ring_100": 60}
    # The personas' passwords are hashed once per test; a fast hasher keeps the suite quick.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


def client_for_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Device {token}")
    return client


@pytest.fixture
def device_client():
    """`device_client(device)` → an API client authenticated as that device."""
    return lambda device: client_for_token(device_token(device))


@pytest.fixture
def device(db):
    return DeviceFactory(device_id="tv-0001", app_version="v2.0")


@pytest.fixture
def stable_release(db):
    return ReleaseFactory(version="v2.0", is_stable=True)


@pytest.fixture
def release(stable_release):
    return ReleaseFactory(
        version="v2.1",
        artifact_url="https://updates.example.com/v2.1.img",
        size_bytes=123_456,
        sha256="a" * 64,
        signature="sig-v2.1",
        previous_release=stable_release,
    )


@pytest.fixture
def rollout(release):
    """An active rollout in its pilot ring."""
    return RolloutFactory(release=release, status=RolloutStatus.ACTIVE, current_ring="pilot")
