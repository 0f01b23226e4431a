"""The fleet's release: the current release per variant, the rollback target it makes, refusing a
rollout that changes nothing, the split-fleet flag, rollback after completion and devices joining."""

import pytest
from django.urls import reverse

from devices import services as device_services
from devices.models import Device
from rollouts.choices import DeploymentState, RolloutStatus
from rollouts.fleet_release import current_release, current_releases, split_fleet
from rollouts.models import DeviceDeployment, Release, Rollout
from rollouts.services import lifecycle
from rollouts.services.deployments import DesiredAction, device_desired_state
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AuditEvent
from tests.factories import (
    DEMO_STAGES,
    DeviceFactory,
    HardwareVariantFactory,
    ReleaseFactory,
    RolloutPlanFactory,
)
from tests.rollouts.helpers import report

pytestmark = pytest.mark.django_db


def complete(rollout: Rollout, manager) -> Rollout:
    """Drive a rollout through every ring to completion; its devices then run its release."""
    if rollout.status == RolloutStatus.CREATED:
        lifecycle.rollout_start(rollout=rollout, actor=manager)
    while rollout.status == RolloutStatus.ACTIVE:
        report(rollout, rollout.current_ring)
        lifecycle.rollout_promote(rollout=rollout, actor=manager)
    Device.objects.filter(deployments__rollout=rollout, deployments__state=DeploymentState.ACTIVATED).update(
        app_version=rollout.release.version
    )
    return rollout


def last_event(rollout: Rollout) -> AuditEvent:
    return AuditEvent.objects.filter(rollout=rollout).order_by("-created_at", "-id").first()


@pytest.fixture
def stable(db) -> Release:
    return ReleaseFactory(version="v2.0", is_stable=True)


# --- the current release --------------------------------------------------------------------------


def test_before_any_completion_the_newest_stable_release_is_current(stable, release, fleet):
    variant = fleet["pilot"][0].variant_id

    assert current_release(variant).release == stable
    assert current_release(variant).rollout is None


def test_completing_a_rollout_makes_its_release_stable_and_current(stable, rollout, manager, fleet):
    complete(rollout, manager)

    rollout.release.refresh_from_db()
    assert rollout.release.is_stable
    for device in (fleet["pilot"][0], fleet["ring_100"][0]):
        current = current_release(device.variant_id)
        assert (current.release.version, current.rollout) == ("v2.1", rollout)
    event = last_event(rollout)
    assert event.action == "COMPLETED"
    assert event.changes["release"] == {"version": "v2.1", "is_stable": {"before": False, "after": True}}


def test_the_current_release_is_per_variant(stable, plan, manager):
    tv_a, tv_b = HardwareVariantFactory(name="tv-a"), HardwareVariantFactory(name="tv-b")
    for index in range(12):
        DeviceFactory(ring="pilot", variant=tv_a, device_id=f"a-{index}")
        DeviceFactory(ring="pilot", variant=tv_b, device_id=f"b-{index}")
    only_a = ReleaseFactory(version="v2.1-a")
    only_a.compatible_variants.set([tv_a])
    pilot_only = RolloutPlanFactory(name="pilot-only", stages=[dict(DEMO_STAGES[0])])
    rollout = lifecycle.rollout_create(release=only_a, plan=pilot_only, actor=manager)

    complete(rollout, manager)

    assert current_release(tv_a.pk).release == only_a
    assert current_release(tv_b.pk).release == stable
    assert {name: current.release.version for name, current in current_releases().items()} == {
        "tv-a": "v2.1-a",
        "tv-b": "v2.0",
    }


def test_the_release_api_says_for_which_variants_a_release_is_current(stable, rollout, manager, viewer):
    complete(rollout, manager)

    body = viewer.get("/api/releases/v2.1").json()
    assert body["current_for"] == sorted({device.variant.name for device in Device.objects.all()})
    assert viewer.get("/api/releases/v2.0").json()["current_for"] == []


# --- rollback targets ----------------------------------------------------------------------------


def test_a_later_rollback_returns_devices_to_the_release_that_completed(
    stable, plan, rollout, manager, fleet
):
    complete(rollout, manager)
    newer = ReleaseFactory(version="v2.2", previous_release=stable)
    later = lifecycle.rollout_create(release=newer, plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=later, actor=manager)
    report(later, "pilot")

    lifecycle.rollout_rollback(rollout=later, actor=manager, reason="Crashes in pilot.")

    assert last_event(later).changes["deployments"]["back_to_version"] == "v2.1"
    device = fleet["pilot"][0]
    desired = device_desired_state(device=device)
    assert (desired.action, desired.version, desired.release) == (
        DesiredAction.ROLLBACK,
        "v2.1",
        rollout.release,
    )


def test_the_rollout_page_says_where_its_devices_went_back_to(
    stable, plan, rollout, manager, fleet, client, release_manager
):
    complete(rollout, manager)
    later = lifecycle.rollout_create(
        release=ReleaseFactory(version="v2.2", previous_release=stable), plan=plan, actor=manager
    )
    lifecycle.rollout_start(rollout=later, actor=manager)
    report(later, "pilot")
    lifecycle.rollout_rollback(rollout=later, actor=manager, reason="Crashes in pilot.")
    client.force_login(release_manager.user)

    page = client.get(reverse("portal:rollout-detail", args=[later.rollout_id])).content.decode()

    # Not the release's previous_release (v2.0): the release the fleet completed since.
    assert 'Rolled back to <span class="mono">v2.1</span>' in page


# --- refusing a rollout that changes nothing -----------------------------------------------------


def test_a_rollout_of_a_release_every_targeted_device_runs_is_refused(stable, rollout, plan, manager):
    complete(rollout, manager)

    with pytest.raises(ServiceRefused) as refused:
        lifecycle.rollout_create(release=rollout.release, plan=plan, actor=manager)

    assert refused.value.status == 409
    assert refused.value.message == (
        f"Every device this plan targets already runs v2.1 (completed in {rollout.rollout_id} on "
        f"{rollout.finished_at:%Y-%m-%d}); there is nothing to roll out."
    )
    assert Rollout.objects.filter(release=rollout.release).count() == 1


def test_a_regional_plan_is_refused_when_its_region_already_runs_the_release(release, manager, fleet):
    eu, us = fleet["pilot"][0], fleet["pilot"][1]
    Device.objects.filter(pk=eu.pk).update(region="eu", app_version=release.version)
    Device.objects.filter(pk=us.pk).update(region="us")
    plan = RolloutPlanFactory(
        name="eu-only", stages=[{"ring": "eu-pilot", "rings": ["pilot"], "region": "eu"}]
    )

    with pytest.raises(ServiceRefused) as refused:
        lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    assert refused.value.message.startswith(f"Every device this plan targets already runs {release.version}")


def test_the_api_answers_409_to_a_rollout_that_changes_nothing(stable, rollout, manager, release_manager):
    complete(rollout, manager)

    response = release_manager.post("/api/rollouts", {"version": "v2.1"}, format="json")

    assert response.status_code == 409
    assert "already runs v2.1" in response.json()["error"]


def test_starting_skips_devices_already_on_the_release(rollout, manager, fleet):
    Device.objects.filter(pk__in=[device.pk for device in fleet["pilot"][:5]]).update(app_version="v2.1")

    lifecycle.rollout_start(rollout=rollout, actor=manager)

    event = last_event(rollout)
    assert event.changes["deployments"]["targeted"] == 15
    assert event.changes["deployments"]["skipped_current"] == 5
    assert event.reason == "Deploying v2.1 to 15 devices of pilot; skipped 5 already on v2.1."


def test_starting_a_second_rollout_of_a_release_under_way_is_refused(started, plan, release, manager):
    second = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    with pytest.raises(ServiceRefused, match=f"already being rolled out by {started.rollout_id}"):
        lifecycle.rollout_start(rollout=second, actor=manager)

    second.refresh_from_db()
    assert second.status == RolloutStatus.CREATED
    assert last_event(second).action == "START_REFUSED"


# --- the split-fleet flag ------------------------------------------------------------------------


def test_a_split_fleet_is_flagged_only_while_no_rollout_explains_it(rollout, manager, fleet):
    assert split_fleet() == []
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    Device.objects.filter(ring="pilot").update(app_version="v2.1")
    assert split_fleet() == []  # the active rollout explains it

    lifecycle.rollout_pause(rollout=rollout, actor=manager)
    lifecycle.rollout_rollback(rollout=rollout, actor=manager, reason="Stopping here.")

    [split] = split_fleet()
    assert (split.variant, split.versions) == ("tv-55-gen3", [("v2.0", 52), ("v2.1", 20)])
    assert split.sentence == (
        "Split fleet: 52 devices on v2.0, 20 devices on v2.1 (variant tv-55-gen3); "
        "no active rollout explains it."
    )


def test_the_dashboard_shows_the_split_fleet_with_its_counts(client, fleet, release_manager):
    Device.objects.filter(ring="pilot").update(app_version="v2.1")
    client.force_login(release_manager.user)

    page = client.get(reverse("portal:dashboard")).content.decode()

    assert "Split fleet: 52 devices on v2.0, 20 devices on v2.1 (variant tv-55-gen3)" in page
    Device.objects.update(app_version="v2.1")
    assert "Split fleet" not in client.get(reverse("portal:dashboard")).content.decode()


# --- rollback after completion ---------------------------------------------------------------------


def test_a_completed_rollout_is_rolled_back_over_the_api_with_a_reason(
    stable, rollout, manager, fleet, release_manager
):
    complete(rollout, manager)

    response = release_manager.post(
        f"/api/rollouts/{rollout.rollout_id}/rollback", {"reason": "Field reports of freezes."}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "rolled_back"
    event = last_event(rollout)
    assert (event.action, event.reason, event.actor_name) == (
        "ROLLBACK",
        "Field reports of freezes.",
        release_manager.user.username,
    )
    assert event.changes["before"] == {"state": "completed"}
    assert event.changes["deployments"]["rolling_back"] == sum(len(devices) for devices in fleet.values())
    assert event.changes["deployments"]["back_to_version"] == "v2.0"
    assert event.changes["release"] == {"version": "v2.1", "is_stable": {"before": True, "after": False}}
    desired = device_desired_state(device=fleet["ring_100"][0])
    assert (desired.action, desired.version) == (DesiredAction.ROLLBACK, "v2.0")
    assert current_release(fleet["ring_100"][0].variant_id).release == stable


def test_rolling_back_a_completed_rollout_needs_a_reason(stable, rollout, manager, release_manager):
    complete(rollout, manager)

    response = release_manager.post(f"/api/rollouts/{rollout.rollout_id}/rollback", {}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"]["reason"] == ["Rolling back a completed rollout needs a reason."]
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.COMPLETED


def test_a_viewer_cannot_roll_back_a_completed_rollout(stable, rollout, manager, viewer):
    complete(rollout, manager)

    response = viewer.post(f"/api/rollouts/{rollout.rollout_id}/rollback", {"reason": "x"}, format="json")

    assert response.status_code == 403
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.COMPLETED


def test_a_completed_rollout_superseded_by_a_newer_one_is_not_rolled_back(
    stable, rollout, plan, manager, release_manager
):
    complete(rollout, manager)
    newer = lifecycle.rollout_create(release=ReleaseFactory(version="v2.2"), plan=plan, actor=manager)
    complete(newer, manager)

    response = release_manager.post(
        f"/api/rollouts/{rollout.rollout_id}/rollback", {"reason": "Too late."}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["error"] == (
        f"Cannot roll back {rollout.rollout_id}: {newer.rollout_id} of v2.2 has since reached 72 of its "
        "devices and is completed; roll that back first."
    )
    assert last_event(rollout).action == "ROLLBACK_REFUSED"
    # Rolling the newer one back first makes the older one the current release again, and free.
    lifecycle.rollout_rollback(rollout=newer, actor=manager, reason="Bad build.")
    assert current_release(Device.objects.first().variant_id).release == rollout.release


def test_the_portal_offers_roll_back_on_a_completed_rollout(
    stable, rollout, manager, client, release_manager
):
    complete(rollout, manager)
    client.force_login(release_manager.user)

    page = client.get(reverse("portal:rollout-detail", args=[rollout.rollout_id])).content.decode()

    assert "Roll back to v2.0" in page


# --- devices that join later ---------------------------------------------------------------------


def enroll(
    device_id: str,
    *,
    variant: str,
    django_capture_on_commit_callbacks,
    ring: str = "pilot",
    region: str = "",
) -> Device:
    with django_capture_on_commit_callbacks(execute=True):
        device, _ = device_services.device_enroll(
            device_id=device_id,
            enrollment_key="test-enrollment-key",
            ring=ring,
            variant=variant,
            region=region,
            version="v2.0",
        )
    return device


def test_a_device_enrolling_after_its_ring_was_deployed_gets_the_release(
    started, fleet, django_capture_on_commit_callbacks
):
    variant = fleet["pilot"][0].variant.name

    device = enroll(
        "late-1", variant=variant, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks
    )

    deployment = DeviceDeployment.objects.get(device=device)
    assert (deployment.rollout, deployment.ring, deployment.state) == (
        started,
        "pilot",
        DeploymentState.PENDING,
    )
    assert deployment.released_at is not None
    event = AuditEvent.objects.get(action="DEPLOY_JOINED")
    assert (event.rollout, event.object_repr) == (started, "late-1")
    assert device_desired_state(device=device).action == DesiredAction.INSTALL


def test_a_device_enrolling_in_a_ring_not_deployed_yet_waits(
    started, fleet, django_capture_on_commit_callbacks
):
    variant = fleet["pilot"][0].variant.name

    device = enroll(
        "late-2",
        variant=variant,
        ring="ring_100",
        django_capture_on_commit_callbacks=django_capture_on_commit_callbacks,
    )

    assert not DeviceDeployment.objects.filter(device=device).exists()


def test_a_joining_device_gets_the_stage_of_its_own_region(
    release, manager, fleet, django_capture_on_commit_callbacks
):
    Device.objects.filter(pk=fleet["pilot"][0].pk).update(region="eu")
    Device.objects.filter(pk=fleet["pilot"][1].pk).update(region="us")
    plan = RolloutPlanFactory(
        name="by-region",
        stages=[
            {"ring": "eu-pilot", "rings": ["pilot"], "region": "eu"},
            {"ring": "us-pilot", "rings": ["pilot"], "region": "us"},
        ],
    )
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    lifecycle.rollout_promote(rollout=rollout, actor=manager, override=True, reason="On to the US.")
    assert rollout.current_ring == "us-pilot"
    variant = fleet["pilot"][0].variant.name

    in_us = enroll(
        "late-us",
        variant=variant,
        region="us",
        django_capture_on_commit_callbacks=django_capture_on_commit_callbacks,
    )
    in_eu = enroll(
        "late-eu",
        variant=variant,
        region="eu",
        django_capture_on_commit_callbacks=django_capture_on_commit_callbacks,
    )

    # Both regions' pilots are deployed: each device joins the stage of its own region.
    assert DeviceDeployment.objects.get(device=in_us).ring == "us-pilot"
    assert DeviceDeployment.objects.get(device=in_eu).ring == "eu-pilot"


def test_a_device_of_a_variant_the_release_does_not_support_gets_nothing(
    plan, manager, fleet, django_capture_on_commit_callbacks
):
    supported = fleet["pilot"][0].variant
    release = ReleaseFactory(version="v2.1-only")
    release.compatible_variants.set([supported])
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)

    device = enroll(
        "late-3",
        variant="other-hardware",
        django_capture_on_commit_callbacks=django_capture_on_commit_callbacks,
    )

    assert not DeviceDeployment.objects.filter(device=device).exists()
    assert not AuditEvent.objects.filter(action="DEPLOY_JOINED").exists()


def test_a_device_joining_a_completed_rollouts_ring_gets_its_release(
    stable, rollout, manager, fleet, django_capture_on_commit_callbacks
):
    complete(rollout, manager)
    variant = fleet["ring_100"][0].variant.name

    device = enroll(
        "late-4",
        variant=variant,
        ring="ring_100",
        django_capture_on_commit_callbacks=django_capture_on_commit_callbacks,
    )

    deployment = DeviceDeployment.objects.get(device=device)
    assert (deployment.rollout, deployment.ring) == (rollout, "ring_100")
    assert device_desired_state(device=device).version == "v2.1"


def test_a_device_whose_credential_is_given_again_joins(
    rollout, manager, fleet, django_capture_on_commit_callbacks
):
    device = fleet["pilot"][0]
    device_services.device_revoke_credential(device=device, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    assert last_event(rollout).changes["deployments"]["skipped_revoked"] == 1
    assert not DeviceDeployment.objects.filter(device=device).exists()

    with django_capture_on_commit_callbacks(execute=True):
        device_services.device_rotate_credential(device=device, actor=manager)

    deployment = DeviceDeployment.objects.get(device=device)
    assert (deployment.rollout, deployment.ring, deployment.state) == (
        rollout,
        "pilot",
        DeploymentState.PENDING,
    )
    assert "given a credential again" in AuditEvent.objects.get(action="DEPLOY_JOINED").reason
