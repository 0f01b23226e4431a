"""Retries: a plan may try a failed deployment again (count, backoff doubling each time); only a
failure after the last retry is final and counts in the deployment-failure gate."""

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from rollouts import autopilot
from rollouts.choices import DeploymentState, RolloutStatus
from rollouts.models import DeviceDeployment, Rollout, RolloutPlan
from rollouts.selectors import rollout_deployment_summary, rollout_signals
from rollouts.services import lifecycle
from rollouts.services.deployments import device_desired_state, retry_delay
from saferoll.core.models import AuditEvent
from tests.factories import DeviceDeploymentFactory, RolloutFactory, RolloutPlanFactory, device_token

pytestmark = pytest.mark.django_db

POLICY = {"count": 2, "backoff_seconds": 60}


@pytest.fixture
def retrying(fleet, release, manager) -> Rollout:
    """A started rollout whose plan retries a failed deployment twice, after 60 s then 120 s."""
    plan = RolloutPlanFactory(name="retrying", retries=POLICY)
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    return lifecycle.rollout_start(rollout=rollout, actor=manager)


def first_deployment(rollout: Rollout) -> DeviceDeployment:
    return (
        DeviceDeployment.objects.filter(rollout=rollout, ring="pilot")
        .select_related("device")
        .order_by("device_id")
        .first()
    )


def device_api(device) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Device {device_token(device)}")
    return client


def send(client: APIClient, rollout: Rollout, state: str, **extra):
    response = client.post(
        f"/api/device/deployments/{rollout.rollout_id}", {"state": state, **extra}, format="json"
    )
    assert response.status_code == 200, response.json()
    return response.json()


def fail_once(client, rollout, error="SHA-256 mismatch") -> dict:
    send(client, rollout, "downloading")
    return send(client, rollout, "failed", error=error)


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(1, dt.timedelta(seconds=60)), (2, dt.timedelta(seconds=120)), (3, None), (0, dt.timedelta(seconds=60))],
)
def test_the_backoff_doubles_with_each_retry_until_the_count_is_used(attempts, expected):
    assert retry_delay(POLICY, attempts) == expected
    assert retry_delay({}, attempts) is None


def test_a_reported_failure_goes_back_to_pending_after_the_backoff_keeping_the_error(retrying):
    deployment = first_deployment(retrying)
    before = timezone.now()

    body = fail_once(device_api(deployment.device), retrying)

    deployment.refresh_from_db()
    assert (body["state"], body["attempts"], body["last_error"]) == ("pending", 1, "SHA-256 mismatch")
    assert deployment.state == DeploymentState.PENDING
    assert deployment.failed_at >= before
    assert deployment.released_at == deployment.failed_at + dt.timedelta(seconds=60)
    assert body["released_at"] is not None


def test_the_device_is_told_to_install_again_only_after_the_backoff(retrying):
    deployment = first_deployment(retrying)
    fail_once(device_api(deployment.device), retrying)
    deployment.refresh_from_db()
    failed_at = deployment.failed_at

    waiting = device_desired_state(device=deployment.device, now=failed_at + dt.timedelta(seconds=59))
    due = device_desired_state(device=deployment.device, now=failed_at + dt.timedelta(seconds=60))

    assert (waiting.action, waiting.version) == ("none", "v2.0")
    assert (due.action, due.version) == ("install", "v2.1")


def test_a_failure_reported_again_during_the_backoff_does_not_use_up_a_retry(retrying):
    deployment = first_deployment(retrying)
    client = device_api(deployment.device)
    first = fail_once(client, retrying)

    again = send(client, retrying, "failed", error="SHA-256 mismatch")

    assert again == first
    deployment.refresh_from_db()
    assert (deployment.state, deployment.attempts) == (DeploymentState.PENDING, 1)


def test_the_failure_after_the_last_retry_is_final_and_counts_in_the_gate(retrying):
    deployment = first_deployment(retrying)
    client = device_api(deployment.device)
    backoffs = []
    for _ in range(2):
        fail_once(client, retrying)
        deployment.refresh_from_db()
        backoffs.append(deployment.released_at - deployment.failed_at)
        # The backoff is over: the device may try again.
        DeviceDeployment.objects.filter(pk=deployment.pk).update(released_at=timezone.now())
        assert rollout_signals(retrying, "pilot").deployment_failure_rate == 0

    final = fail_once(client, retrying, error="Still corrupt")

    assert backoffs == [dt.timedelta(seconds=60), dt.timedelta(seconds=120)]
    assert (final["state"], final["attempts"], final["last_error"]) == ("failed", 3, "Still corrupt")
    assert rollout_signals(retrying, "pilot").deployment_failure_rate == 1.0
    assert device_desired_state(device=deployment.device).action == "none"


def test_a_deployment_waiting_for_its_retry_counts_as_exposed_not_failed(retrying):
    deployments = list(
        DeviceDeployment.objects.filter(rollout=retrying, ring="pilot").select_related("device")
    )
    retried, final, fine = deployments[0], deployments[1], deployments[2]
    fail_once(device_api(retried.device), retrying)
    DeviceDeployment.objects.filter(pk=final.pk).update(state=DeploymentState.FAILED, attempts=3)
    DeviceDeployment.objects.filter(pk=fine.pk).update(state=DeploymentState.ACTIVATED, attempts=1)

    # Exposed: the retried one, the final failure and the activated one; failed: only the final one.
    assert rollout_signals(retrying, "pilot").deployment_failure_rate == pytest.approx(1 / 3)
    summary = rollout_deployment_summary(retrying)
    assert summary.exposed == 3
    assert summary.by_ring["pilot"]["exposed"] == 3
    assert summary.by_state["pending"] == len(deployments) - 2


def test_a_failure_before_any_download_counts_as_a_try(fleet, release, manager):
    plan = RolloutPlanFactory(name="one-retry", retries={"count": 1, "backoff_seconds": 0})
    rollout = lifecycle.rollout_start(
        rollout=lifecycle.rollout_create(release=release, plan=plan, actor=manager), actor=manager
    )
    client = device_api(first_deployment(rollout).device)

    first = send(client, rollout, "failed", error="Disk full")
    second = send(client, rollout, "failed", error="Disk full")

    assert (first["state"], first["attempts"]) == ("pending", 1)
    assert (second["state"], second["attempts"]) == ("failed", 2)


def test_without_a_retry_policy_a_failure_is_final(started):
    deployment = first_deployment(started)

    body = fail_once(device_api(deployment.device), started)

    assert body["state"] == "failed"
    assert rollout_signals(started, "pilot").deployment_failure_rate == 1.0


def test_the_stuck_sweep_retries_by_the_plan_and_fails_for_good_without_one(retrying, settings):
    settings.SAFEROLL_DEPLOYMENT_STEP_TIMEOUT_SECONDS = 900
    now = timezone.now()
    stuck_retried = first_deployment(retrying)
    # Another rollout, whose plan has no retry policy.
    stuck_final = DeviceDeploymentFactory(
        rollout=RolloutFactory(status=RolloutStatus.ACTIVE, current_ring="pilot")
    )
    for deployment in (stuck_retried, stuck_final):
        DeviceDeployment.objects.filter(pk=deployment.pk).update(
            state=DeploymentState.DOWNLOADING, attempts=1, state_changed_at=now - dt.timedelta(minutes=16)
        )

    assert autopilot.deployments_fail_stuck(now=now) == 2
    assert autopilot.deployments_fail_stuck(now=now) == 0

    stuck_retried.refresh_from_db()
    stuck_final.refresh_from_db()
    assert stuck_retried.state == DeploymentState.PENDING
    assert stuck_retried.released_at == now + dt.timedelta(seconds=60)
    assert "Stuck in downloading" in stuck_retried.last_error and stuck_retried.failed_at == now
    assert stuck_final.state == DeploymentState.FAILED


def test_the_device_page_shows_attempts_and_the_next_retry(retrying, viewer, client):
    deployment = first_deployment(retrying)
    fail_once(device_api(deployment.device), retrying)
    client.force_login(viewer.user)

    page = client.get(f"/devices/{deployment.device.device_id}").content.decode()
    rollout_page = client.get(f"/rollouts/{retrying.rollout_id}").content.decode()

    assert "Next retry at" in page
    assert "1 of 3" in page
    assert "SHA-256 mismatch" in page
    assert "tried again up to 2 times" in rollout_page
    assert "1 device waits for a retry" in rollout_page


NEW_PLAN = {"name": "retried", "stages": [{"ring": "pilot"}]}


@pytest.mark.parametrize(
    ("retries", "error"),
    [
        ({"count": -1}, "retries.count must be a whole number from 0 to 10."),
        ({"count": 11}, "retries.count must be a whole number from 0 to 10."),
        ({"count": "3"}, "retries.count must be a whole number from 0 to 10."),
        ({"backoff_seconds": 60}, "retries.count must be a whole number from 0 to 10."),
        (
            {"count": 2, "backoff_seconds": -1},
            "retries.backoff_seconds must be a whole number of seconds from 0 to 86400 (a day).",
        ),
        (
            {"count": 2, "backoff_seconds": 86401},
            "retries.backoff_seconds must be a whole number of seconds from 0 to 86400 (a day).",
        ),
        (
            {"count": 2, "backoff_seconds": 1.5},
            "retries.backoff_seconds must be a whole number of seconds from 0 to 86400 (a day).",
        ),
        (
            {"count": 2, "delay": 5},
            "retries has unknown setting(s): delay; it takes count and backoff_seconds.",
        ),
        ("twice", 'retries must be an object such as {"count": 2, "backoff_seconds": 60}.'),
    ],
)
def test_a_plan_with_a_bad_retry_policy_is_refused_with_a_sentence(release_manager, retries, error):
    response = release_manager.post("/api/plans", {**NEW_PLAN, "retries": retries}, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "Invalid input.", "fields": {"retries": [error]}}
    assert not AuditEvent.objects.filter(object_type="rolloutplan").exists()


def test_a_release_manager_creates_a_plan_with_retries_and_a_rollout_freezes_them(
    release_manager, release, manager
):
    response = release_manager.post(
        "/api/plans", {**NEW_PLAN, "retries": {"count": 3, "backoff_seconds": 30}}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["retries"] == {"count": 3, "backoff_seconds": 30}
    event = AuditEvent.objects.get(object_type="rolloutplan")
    assert event.changes["after"]["retries"] == {"count": 3, "backoff_seconds": 30}
    plan = RolloutPlan.objects.get(name="retried")
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    release_manager.patch("/api/plans/retried", {"retries": {"count": 0}}, format="json")
    rollout.refresh_from_db()
    assert rollout.retries == {"count": 3, "backoff_seconds": 30}
