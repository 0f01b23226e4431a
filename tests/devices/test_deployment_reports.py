import pytest
from django.utils import timezone

from rollouts.choices import DeploymentState, RolloutStatus
from rollouts.models import DeviceDeployment
from rollouts.services import deployments
from rollouts.services.deployments import DIAGNOSTICS_MAX_BYTES
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AuditEvent
from tests.factories import DeviceDeploymentFactory, DeviceFactory, ReleaseFactory, RolloutFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(device, rollout):
    return DeviceDeploymentFactory(device=device, rollout=rollout, from_version="v2.0")


@pytest.fixture
def report(device, device_client, rollout):
    """`report(state, **extra)` → the response to the device reporting that step."""
    client = device_client(device)

    def send(state, rollout_id=None, **extra):
        return client.post(
            f"/api/device/deployments/{rollout_id or rollout.rollout_id}",
            {"state": state, **extra},
            format="json",
        )

    return send


def test_it_records_each_step_through_to_activation(report, deployment, device):
    before = timezone.now()

    downloading = report("downloading")
    verified = report("verified")
    activated = report("activated")

    assert [r.status_code for r in (downloading, verified, activated)] == [200, 200, 200]
    body = activated.json()
    assert (body["rollout_id"], body["device_id"], body["state"]) == (
        deployment.rollout.rollout_id,
        "tv-0001",
        "activated",
    )
    assert body["attempts"] == 1
    assert body["last_error"] == ""
    deployment.refresh_from_db()
    assert before <= deployment.downloading_at <= deployment.verified_at <= deployment.activated_at
    assert deployment.state_changed_at == deployment.activated_at
    device.refresh_from_db()
    assert device.app_version == "v2.1"


def test_it_writes_no_audit_event_for_device_reports(report, deployment):
    report("downloading")

    assert not AuditEvent.objects.exists()


def test_it_answers_a_repeated_report_without_changing_anything(report, deployment):
    first = report("downloading").json()

    again = report("downloading")

    assert again.status_code == 200
    assert again.json() == first
    assert again.json()["attempts"] == 1


def test_it_counts_a_new_download_attempt(report, deployment):
    DeviceDeployment.objects.filter(pk=deployment.pk).update(attempts=2)

    body = report("downloading").json()

    assert body["attempts"] == 3


@pytest.mark.parametrize(
    ("current", "reported"),
    [
        (DeploymentState.PENDING, "verified"),
        (DeploymentState.PENDING, "activated"),
        (DeploymentState.DOWNLOADING, "activated"),
        (DeploymentState.VERIFIED, "downloading"),
        (DeploymentState.ACTIVATED, "downloading"),
        (DeploymentState.ACTIVATED, "failed"),
        (DeploymentState.FAILED, "activated"),
        (DeploymentState.PENDING, "rolled_back"),
        (DeploymentState.ACTIVATED, "rolled_back"),
        (DeploymentState.ROLLING_BACK, "activated"),
        (DeploymentState.CANCELLED, "downloading"),
    ],
)
def test_it_refuses_an_illegal_step_with_409(report, deployment, current, reported):
    DeviceDeployment.objects.filter(pk=deployment.pk).update(state=current)

    response = report(reported, error="boom")

    assert response.status_code == 409
    body = response.json()
    assert reported in body["error"]
    assert body["state"] == current
    deployment.refresh_from_db()
    assert deployment.state == current


@pytest.mark.parametrize(
    "current", [DeploymentState.PENDING, DeploymentState.DOWNLOADING, DeploymentState.VERIFIED]
)
def test_it_records_a_failure_with_its_error_and_diagnostics(report, deployment, current):
    DeviceDeployment.objects.filter(pk=deployment.pk).update(state=current)

    response = report("failed", error="Checksum mismatch", diagnostics="sha256 was 00ff...\n")

    assert response.status_code == 200
    assert response.json()["last_error"] == "Checksum mismatch"
    deployment.refresh_from_db()
    assert (deployment.state, deployment.diagnostics) == ("failed", "sha256 was 00ff...\n")
    assert deployment.failed_at is not None


@pytest.mark.parametrize("extra", [{}, {"error": ""}, {"error": "   "}])
def test_it_refuses_a_failure_without_an_error_message(report, deployment, extra):
    response = report("failed", **extra)

    assert response.status_code == 400
    assert "error" in response.json()["fields"]
    deployment.refresh_from_db()
    assert deployment.state == DeploymentState.PENDING


def test_it_records_a_rollback_and_puts_the_previous_version_back(report, device, rollout):
    device.app_version = "v2.1"
    device.save()
    DeviceDeploymentFactory(device=device, rollout=rollout, state=DeploymentState.ROLLING_BACK)
    rollout.status = RolloutStatus.ROLLED_BACK
    rollout.save()

    response = report("rolled_back")

    assert response.status_code == 200
    assert response.json()["state"] == "rolled_back"
    assert response.json()["rolled_back_at"]
    device.refresh_from_db()
    assert device.app_version == "v2.0"


def test_it_rolls_back_to_the_from_version_without_a_previous_release(device, device_client):
    rollout = RolloutFactory(release=ReleaseFactory(version="v9"), status=RolloutStatus.ROLLED_BACK)
    DeviceDeploymentFactory(
        device=device, rollout=rollout, state=DeploymentState.ROLLING_BACK, from_version="v1.9"
    )

    response = device_client(device).post(
        f"/api/device/deployments/{rollout.rollout_id}", {"state": "rolled_back"}, format="json"
    )

    assert response.status_code == 200
    device.refresh_from_db()
    assert device.app_version == "v1.9"


@pytest.mark.parametrize("state", ["downloading", "verified", "activated", "failed"])
def test_it_refuses_progress_reports_for_a_rolled_back_rollout(report, deployment, rollout, state):
    rollout.status = RolloutStatus.ROLLED_BACK
    rollout.save()
    DeviceDeployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.DOWNLOADING)

    response = report(state, error="boom")

    assert response.status_code == 409
    assert "rolled back" in response.json()["error"]


def test_it_accepts_download_reports_while_the_rollout_is_paused(report, deployment, rollout):
    rollout.status = RolloutStatus.PAUSED
    rollout.save()

    assert report("downloading").status_code == 200
    assert report("verified").status_code == 200


def test_it_answers_404_for_an_unknown_rollout(report, deployment):
    response = report("downloading", rollout_id="rollout_nope")

    assert response.status_code == 404
    assert "rollout_nope" in response.json()["error"]


def test_it_answers_404_for_another_devices_rollout(report, device):
    other = DeviceDeploymentFactory(device=DeviceFactory(device_id="tv-other"))

    response = report("downloading", rollout_id=other.rollout.rollout_id)

    assert response.status_code == 404
    other.refresh_from_db()
    assert other.state == DeploymentState.PENDING


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "state"),
        ({"state": "pending"}, "state"),
        ({"state": "rolling_back"}, "state"),
        ({"state": "cancelled"}, "state"),
        ({"state": 3}, "state"),
        ({"state": "downloading", "progress": 40}, "progress"),
        ({"state": "failed", "error": "x" * 2001}, "error"),
        (
            {"state": "failed", "error": "boom", "diagnostics": "x" * (DIAGNOSTICS_MAX_BYTES + 1)},
            "diagnostics",
        ),
    ],
)
def test_it_refuses_bad_reports_with_400(device, device_client, deployment, payload, field):
    response = device_client(device).post(
        f"/api/device/deployments/{deployment.rollout.rollout_id}", payload, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_it_refuses_malformed_json_with_400(device, device_client, deployment):
    response = device_client(device).post(
        f"/api/device/deployments/{deployment.rollout.rollout_id}", "{", content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"].startswith("Malformed request body")


@pytest.fixture
def stale_read(monkeypatch, deployment):
    """Make the report read the deployment as it was before a concurrent report moved it on."""
    stale = DeviceDeployment.objects.select_related("rollout__release", "device").get(pk=deployment.pk)
    monkeypatch.setattr(deployments, "_deployment_for", lambda **kwargs: stale)
    return stale


def test_it_counts_a_download_once_when_two_identical_reports_race(stale_read, deployment, device):
    DeviceDeployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.DOWNLOADING, attempts=1)

    result = deployments.deployment_report(device=device, rollout=deployment.rollout, state="downloading")

    assert (result.state, result.attempts) == ("downloading", 1)


def test_it_refuses_a_report_that_lost_the_race_to_a_different_step(stale_read, deployment, device):
    DeviceDeployment.objects.filter(pk=deployment.pk).update(
        state=DeploymentState.FAILED, last_error="timeout"
    )

    with pytest.raises(ServiceRefused):
        deployments.deployment_report(device=device, rollout=deployment.rollout, state="downloading")

    deployment.refresh_from_db()
    assert (deployment.state, deployment.attempts) == ("failed", 0)


# --- diagnostics -------------------------------------------------------------------------------


def test_it_attaches_diagnostics_to_the_devices_deployment(device, device_client, deployment):
    response = device_client(device).post(
        f"/api/device/deployments/{deployment.rollout.rollout_id}/diagnostics",
        {"diagnostics": "boot log line 1\nline 2\n"},
        format="json",
    )

    assert response.status_code == 200
    deployment.refresh_from_db()
    assert deployment.diagnostics == "boot log line 1\nline 2\n"
    assert deployment.state == DeploymentState.PENDING


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"diagnostics": ""},
        {"diagnostics": ["a"]},
        {"diagnostics": "é" * (DIAGNOSTICS_MAX_BYTES // 2 + 1)},
    ],
)
def test_it_refuses_bad_diagnostics_with_400(device, device_client, deployment, payload):
    response = device_client(device).post(
        f"/api/device/deployments/{deployment.rollout.rollout_id}/diagnostics", payload, format="json"
    )

    assert response.status_code == 400
    assert "diagnostics" in response.json()["fields"]


def test_it_answers_404_for_diagnostics_of_another_devices_deployment(device, device_client):
    other = DeviceDeploymentFactory(device=DeviceFactory(device_id="tv-other"))

    response = device_client(device).post(
        f"/api/device/deployments/{other.rollout.rollout_id}/diagnostics", {"diagnostics": "x"}, format="json"
    )

    assert response.status_code == 404
