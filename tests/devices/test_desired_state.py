import datetime as dt

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from devices.choices import DeviceStatus
from rollouts.choices import DeploymentState, RolloutStatus
from rollouts.services.deployments import activation_start
from tests.factories import DeviceDeploymentFactory, ReleaseFactory, RolloutFactory

pytestmark = pytest.mark.django_db

URL = "/api/device/desired-state"


def desired(device_client, device) -> dict:
    response = device_client(device).get(URL)
    assert response.status_code == 200, response.json()
    return response.json()


def test_it_tells_a_device_without_deployment_to_do_nothing(device, device_client):
    assert desired(device_client, device) == {"action": "none", "version": "v2.0"}


def test_it_tells_a_pending_device_to_install_and_activate(device, device_client, rollout):
    DeviceDeploymentFactory(device=device, rollout=rollout)

    assert desired(device_client, device) == {
        "action": "install",
        "rollout_id": rollout.rollout_id,
        "release": {
            "version": "v2.1",
            "artifact_url": "https://updates.example.com/v2.1.img",
            "size_bytes": 123_456,
            "sha256": "a" * 64,
            "signature": "sig-v2.1",
        },
        "activate": True,
        "activate_after": None,
    }


@pytest.mark.parametrize("state", [DeploymentState.DOWNLOADING, DeploymentState.VERIFIED])
def test_it_keeps_telling_a_device_mid_download_to_install(device, device_client, rollout, state):
    DeviceDeploymentFactory(device=device, rollout=rollout, state=state)

    body = desired(device_client, device)

    assert (body["action"], body["activate"]) == ("install", True)


def test_it_points_to_the_servers_artifact_when_the_release_has_an_uploaded_file(
    device, device_client, rollout, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    rollout.release.artifact_url = ""
    rollout.release.artifact.save("v2.1.img", ContentFile(b"image"), save=True)
    DeviceDeploymentFactory(device=device, rollout=rollout)

    body = desired(device_client, device)

    assert body["release"]["artifact_url"] == "http://testserver/api/releases/v2.1/artifact"


def test_it_says_when_a_device_may_activate_outside_the_maintenance_window(device, device_client, rollout):
    now = timezone.now().astimezone(dt.UTC)
    rollout.activation_window_start = (now + dt.timedelta(hours=2)).time().replace(microsecond=0)
    rollout.activation_window_end = (now + dt.timedelta(hours=4)).time().replace(microsecond=0)
    rollout.save()
    DeviceDeploymentFactory(device=device, rollout=rollout)

    body = desired(device_client, device)

    assert body["activate"] is True
    after = dt.datetime.fromisoformat(body["activate_after"].replace("Z", "+00:00"))
    assert after.time() == rollout.activation_window_start
    assert dt.timedelta(hours=1) < after - now <= dt.timedelta(hours=2)


def test_it_lets_a_device_activate_at_once_inside_the_maintenance_window(device, device_client, rollout):
    now = timezone.now().astimezone(dt.UTC)
    rollout.activation_window_start = (now - dt.timedelta(hours=1)).time()
    rollout.activation_window_end = (now + dt.timedelta(hours=1)).time()
    rollout.save()
    DeviceDeploymentFactory(device=device, rollout=rollout)

    body = desired(device_client, device)

    assert (body["activate"], body["activate_after"]) == (True, None)


def test_it_tells_a_device_that_started_downloading_in_a_paused_rollout_to_download_only(
    device, device_client, rollout
):
    rollout.status = RolloutStatus.PAUSED
    rollout.save()
    DeviceDeploymentFactory(device=device, rollout=rollout, state=DeploymentState.DOWNLOADING)

    body = desired(device_client, device)

    assert (body["action"], body["activate"], body["activate_after"]) == ("install", False, None)


def test_it_tells_a_pending_device_of_a_paused_rollout_to_do_nothing(device, device_client, rollout):
    rollout.status = RolloutStatus.PAUSED
    rollout.save()
    DeviceDeploymentFactory(device=device, rollout=rollout)

    assert desired(device_client, device) == {"action": "none", "version": "v2.0"}


def test_it_tells_an_activated_device_to_do_nothing(device, device_client, rollout):
    device.app_version = "v2.1"
    device.save()
    DeviceDeploymentFactory(device=device, rollout=rollout, state=DeploymentState.ACTIVATED)

    assert desired(device_client, device) == {"action": "none", "version": "v2.1"}


@pytest.mark.parametrize("status", [RolloutStatus.ROLLED_BACK, RolloutStatus.ACTIVE, RolloutStatus.PAUSED])
def test_it_tells_a_rolling_back_device_to_return_to_the_previous_stable_release(
    device, device_client, rollout, stable_release, status
):
    rollout.status = status
    rollout.save()
    DeviceDeploymentFactory(device=device, rollout=rollout, state=DeploymentState.ROLLING_BACK)

    assert desired(device_client, device) == {
        "action": "rollback",
        "rollout_id": rollout.rollout_id,
        "release": {
            "version": "v2.0",
            "artifact_url": stable_release.artifact_url,
            "size_bytes": stable_release.size_bytes,
            "sha256": stable_release.sha256,
            "signature": None,
        },
    }


def test_it_rolls_back_to_the_version_the_device_ran_when_there_is_no_previous_release(device, device_client):
    rollout = RolloutFactory(release=ReleaseFactory(version="v9"), status=RolloutStatus.ROLLED_BACK)
    DeviceDeploymentFactory(
        device=device, rollout=rollout, state=DeploymentState.ROLLING_BACK, from_version="v1.9"
    )

    body = desired(device_client, device)

    assert body["action"] == "rollback"
    assert body["release"] == {
        "version": "v1.9",
        "artifact_url": None,
        "size_bytes": None,
        "sha256": None,
        "signature": None,
    }


def test_it_ignores_deployments_of_a_rollout_not_started(device, device_client, rollout):
    rollout.status = RolloutStatus.CREATED
    rollout.save()
    DeviceDeploymentFactory(device=device, rollout=rollout)

    assert desired(device_client, device)["action"] == "none"


@pytest.mark.parametrize("state", [DeploymentState.PENDING, DeploymentState.VERIFIED])
def test_it_still_brings_a_device_a_completed_rollout_had_not_reached(device, device_client, rollout, state):
    """The last ring passed its gates while this device was off or still in the queue."""
    rollout.status = RolloutStatus.COMPLETED
    rollout.save()
    DeviceDeploymentFactory(device=device, rollout=rollout, state=state)

    body = desired(device_client, device)

    assert (body["action"], body["release"]["version"], body["activate"]) == ("install", "v2.1", True)


def test_it_ignores_finished_deployment_states(device, device_client, rollout):
    DeviceDeploymentFactory(device=device, rollout=rollout, state=DeploymentState.FAILED)

    assert desired(device_client, device)["action"] == "none"


def test_it_follows_the_newest_live_deployment(device, device_client, rollout, release):
    older = RolloutFactory(release=ReleaseFactory(version="v2.05"), status=RolloutStatus.ACTIVE)
    DeviceDeploymentFactory(device=device, rollout=older, state=DeploymentState.ACTIVATED)
    DeviceDeploymentFactory(device=device, rollout=rollout)

    body = desired(device_client, device)

    assert (body["action"], body["rollout_id"]) == ("install", rollout.rollout_id)


def test_it_brings_an_offline_device_online_when_it_checks_in(device, device_client):
    device.status, device.last_heartbeat = DeviceStatus.OFFLINE, timezone.now() - dt.timedelta(hours=1)
    device.save()

    desired(device_client, device)

    device.refresh_from_db()
    assert device.status == DeviceStatus.ONLINE
    assert timezone.now() - device.last_heartbeat < dt.timedelta(minutes=1)


def test_it_leaves_a_device_flagged_for_investigation_flagged(device, device_client):
    device.status = DeviceStatus.INVESTIGATE
    device.save()

    desired(device_client, device)

    device.refresh_from_db()
    assert device.status == DeviceStatus.INVESTIGATE


# --- the maintenance window, with the clock held still ------------------------------------------


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 10, hour, minute, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("start", "end", "now", "expected"),
    [
        (None, None, at(12), None),
        (dt.time(2), dt.time(4), at(3), None),
        (dt.time(2), dt.time(4), at(2), None),
        (dt.time(2), dt.time(4), at(1), at(2)),
        (dt.time(2), dt.time(4), at(4), at(2) + dt.timedelta(days=1)),
        (dt.time(2), dt.time(4), at(23), at(2) + dt.timedelta(days=1)),
        (dt.time(22), dt.time(4), at(23), None),
        (dt.time(22), dt.time(4), at(1), None),
        (dt.time(22), dt.time(4), at(12), at(22)),
        (dt.time(22), dt.time(4), at(4), at(22)),
        (dt.time(5), dt.time(5), at(12), None),
    ],
)
def test_it_computes_the_next_activation_time(start, end, now, expected):
    assert activation_start(start, end, now) == expected


def test_it_reads_the_window_in_utc_whatever_the_clock_zone():
    plus_two = dt.timezone(dt.timedelta(hours=2))
    now = dt.datetime(2026, 3, 10, 3, 0, tzinfo=plus_two)  # 01:00 UTC

    assert activation_start(dt.time(2), dt.time(4), now) == at(2)
