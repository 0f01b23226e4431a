"""What gates a promotion besides health: how much of the ring runs the release, the stage's bake
(binding people too), and a release manager's override with a reason, each audited."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from devices.models import Device
from rollouts.choices import DeploymentState
from rollouts.models import DeviceDeployment, Evaluation, Rollout
from rollouts.services import lifecycle, plans
from saferoll.core import roles
from saferoll.core.models import AuditEvent
from telemetry.models import HealthCheck
from telemetry.rollups import rollups_rebuild
from tests.conftest import client_for
from tests.factories import (
    DeviceFactory,
    HardwareVariantFactory,
    HealthCheckFactory,
    ReleaseFactory,
    RolloutPlanFactory,
    UserFactory,
)
from tests.rollouts.helpers import activate, report

pytestmark = pytest.mark.django_db

# The pilot promotes as soon as its gates pass; ring_5 bakes five minutes.
BAKED_STAGES = [
    {"ring": "pilot", "bake_minutes": 0},
    {"ring": "ring_5", "bake_minutes": 5},
    {"ring": "ring_25", "bake_minutes": 5},
    {"ring": "ring_100", "bake_minutes": 5},
]


def events(rollout: Rollout) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(rollout=rollout).order_by("created_at", "id"))


def actions(rollout: Rollout) -> list[str]:
    return [event.action for event in events(rollout)]


@pytest.fixture
def baked(plan, release, fleet, manager) -> Rollout:
    """A rollout of v2.1 over the test fleet on a plan whose ring_5 bakes, promoted into ring_5."""
    baking_plan = RolloutPlanFactory(name="baking", stages=BAKED_STAGES, gate_config=plan.gate_config)
    rollout = lifecycle.rollout_create(release=release, plan=baking_plan, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    report(rollout, "pilot")
    lifecycle.rollout_promote(rollout=rollout, actor=manager)
    report(rollout, "ring_5")
    return rollout


# --- Install share -------------------------------------------------------------------------------


def test_it_waits_until_enough_of_the_ring_runs_the_release(release_manager, started):
    deployments = list(DeviceDeployment.objects.filter(rollout=started, ring="pilot"))
    # 12 of the 20 pilot devices report the release; 8 have not installed it.
    for deployment in deployments[:12]:
        HealthCheckFactory(device=deployment.device, version="v2.1", received_at=timezone.now())
    DeviceDeployment.objects.filter(pk__in=[d.pk for d in deployments[:12]]).update(
        state=DeploymentState.ACTIVATED, activated_at=timezone.now() - dt.timedelta(minutes=2)
    )

    body = release_manager.get(f"/api/rollouts/{started.rollout_id}/should_promote").json()
    refused = release_manager.post(f"/api/rollouts/{started.rollout_id}/promote")

    assert body["action"] == "WAIT"
    assert body["reason"] == "Installing: 12 of 20 devices run v2.1; 90% needed."
    assert body["evaluation"]["install"] == {
        "targeted": 20,
        "installed": 12,
        "unreachable": 0,
        "incompatible": 0,
        "share": 0.6,
        "min_share": 0.9,
        "met": False,
    }
    assert refused.status_code == 409
    assert refused.json()["reason"] == body["reason"]
    assert AuditEvent.objects.filter(rollout=started).latest("id").action == "PROMOTE_REFUSED"
    assert Rollout.objects.get(pk=started.pk).bake_started_at is None


def test_a_health_check_of_the_release_since_it_was_targeted_counts_as_installed(release_manager, started):
    deployments = list(DeviceDeployment.objects.filter(rollout=started, ring="pilot"))
    # Devices that report health only: their deployments never left pending.
    for deployment in deployments[:18]:
        HealthCheckFactory(device=deployment.device, version="v2.1", received_at=timezone.now())
    # A check of the release from before this rollout targeted the device says nothing about it.
    HealthCheckFactory(
        device=deployments[18].device, version="v2.1", received_at=timezone.now() - dt.timedelta(days=1)
    )

    install = release_manager.get(f"/api/rollouts/{started.rollout_id}").json()["install"]

    assert (install["installed"], install["targeted"], install["met"]) == (18, 20, True)


def test_it_counts_unreachable_and_incompatible_devices_apart(release_manager, plan, manager):
    supported = HardwareVariantFactory(name="tv-55-gen3")
    kiosk = HardwareVariantFactory(name="kiosk-gen1")
    release = ReleaseFactory(version="v2.2")
    release.compatible_variants.set([supported])
    devices = [DeviceFactory(ring="pilot", variant=supported) for _ in range(12)]
    DeviceFactory(ring="pilot", variant=kiosk)
    DeviceFactory(ring="pilot", variant=None)
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    report(rollout, "pilot")
    # Two devices have not installed and have not been heard from for two hours.
    silent = [device.pk for device in devices[:2]]
    DeviceDeployment.objects.filter(rollout=rollout, device_id__in=silent).update(
        state=DeploymentState.PENDING
    )
    HealthCheck.objects.filter(device_id__in=silent).delete()
    rollups_rebuild()
    Device.objects.filter(pk__in=silent).update(last_heartbeat=timezone.now() - dt.timedelta(hours=2))

    body = release_manager.get(f"/api/rollouts/{rollout.rollout_id}/should_promote").json()

    assert body["evaluation"]["install"] == {
        "targeted": 12,
        "installed": 10,
        "unreachable": 2,
        "incompatible": 2,
        "share": 1.0,
        "min_share": 0.9,
        "met": True,
    }
    assert body["action"] == "PROMOTE"


def test_a_regional_stage_counts_only_its_regions_incompatible_devices(manager):
    supported = HardwareVariantFactory(name="tv-55-gen3")
    kiosk = HardwareVariantFactory(name="kiosk-gen1")
    release = ReleaseFactory(version="v2.2")
    release.compatible_variants.set([supported])
    for region in ("eu", "us"):
        DeviceFactory(ring="pilot", variant=supported, region=region)
        DeviceFactory(ring="pilot", variant=kiosk, region=region)
    plan = RolloutPlanFactory(
        name="eu-first", stages=[{"ring": "eu-pilot", "rings": ["pilot"], "region": "eu"}]
    )
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)

    install = lifecycle.rollout_evaluate(rollout=rollout).evaluation["install"]

    assert (install["targeted"], install["incompatible"]) == (1, 1)


def test_it_waits_with_the_devices_it_does_not_count_named(release_manager, started):
    activate(started, "pilot", ago=dt.timedelta(seconds=0))
    pending = list(DeviceDeployment.objects.filter(rollout=started, ring="pilot"))[:5]
    DeviceDeployment.objects.filter(pk__in=[d.pk for d in pending]).update(state=DeploymentState.PENDING)
    Device.objects.filter(pk=pending[0].device_id).update(
        last_heartbeat=timezone.now() - dt.timedelta(hours=3)
    )

    body = release_manager.get(f"/api/rollouts/{started.rollout_id}/should_promote").json()

    assert body["reason"] == "Installing: 15 of 20 devices run v2.1; 90% needed; 1 unreachable not counted."


def test_a_stage_may_ask_for_its_own_installed_share(release_manager, release, fleet, manager):
    lenient = RolloutPlanFactory(name="lenient", stages=[{"ring": "pilot", "min_installed_share": 0.5}])
    rollout = lifecycle.rollout_create(release=release, plan=lenient, actor=manager)
    lifecycle.rollout_start(rollout=rollout, actor=manager)
    activate(rollout, "pilot", ago=dt.timedelta(seconds=0))
    DeviceDeployment.objects.filter(rollout=rollout, device__device_id__lt="pilot-008").update(
        state=DeploymentState.PENDING
    )

    install = release_manager.get(f"/api/rollouts/{rollout.rollout_id}").json()["install"]

    assert (install["installed"], install["min_share"], install["met"]) == (12, 0.5, True)


@pytest.mark.parametrize("share", [1.5, -0.1, "0.9", True, None])
def test_it_refuses_a_stage_share_outside_0_to_1(release_manager, share):
    stages = [{"ring": "pilot", "min_installed_share": share}]
    response = release_manager.post("/api/plans", {"name": "odd", "stages": stages}, format="json")

    assert response.status_code == 400
    assert "Stage 1: min_installed_share must be a share from 0 to 1" in str(response.json())
    assert not AuditEvent.objects.filter(object_repr="odd").exists()


def test_it_keeps_a_stage_share_it_was_given():
    stages = plans.plan_clean_stages([{"ring": "pilot", "min_installed_share": 1}, {"ring": "ring_5"}])
    assert stages[0]["min_installed_share"] == 1.0
    assert "min_installed_share" not in stages[1]


# --- The bake binds people -----------------------------------------------------------------------


def test_a_person_cannot_promote_during_the_bake(release_manager, baked):
    should = release_manager.get(f"/api/rollouts/{baked.rollout_id}/should_promote").json()
    refused = release_manager.post(f"/api/rollouts/{baked.rollout_id}/promote")

    assert should["action"] == "WAIT"
    assert should["reason"] == "Baking: 5 min left of 5 min in ring_5."
    assert refused.status_code == 409
    assert refused.json()["error"] == "Cannot promote: WAIT"
    assert refused.json()["reason"].startswith("Baking: ")
    assert refused.json()["reason"].endswith(" left of 5 min in ring_5.")
    rollout = Rollout.objects.get(pk=baked.pk)
    assert rollout.state == "ring_5"
    # The refusal's judgement found ring_5 installed: its bake runs from then.
    assert rollout.bake_started_at is not None
    event = events(baked)[-1]
    assert (event.action, event.actor_name) == ("PROMOTE_REFUSED", "release_manager-user")
    assert event.evaluation["bake"]["started_at"] is not None


def test_the_bake_runs_from_when_the_share_was_met_and_then_a_person_may_promote(release_manager, baked):
    release_manager.post(f"/api/rollouts/{baked.rollout_id}/promote")
    started_at = Rollout.objects.get(pk=baked.pk).bake_started_at
    Rollout.objects.filter(pk=baked.pk).update(bake_started_at=started_at - dt.timedelta(minutes=4))

    still = release_manager.get(f"/api/rollouts/{baked.rollout_id}/should_promote").json()
    Rollout.objects.filter(pk=baked.pk).update(bake_started_at=started_at - dt.timedelta(minutes=6))
    promoted = release_manager.post(f"/api/rollouts/{baked.rollout_id}/promote")

    assert still["action"] == "WAIT"
    assert still["evaluation"]["bake"]["remaining_seconds"] <= 60
    assert promoted.status_code == 200
    assert promoted.json()["state"] == "ring_25"
    assert promoted.json()["bake_started_at"] is None
    assert promoted.json()["bake"] == {"started_at": None, "minutes": 5, "remaining_seconds": 300}


def test_should_promote_does_not_start_the_bake(release_manager, baked):
    release_manager.get(f"/api/rollouts/{baked.rollout_id}/should_promote")

    assert Rollout.objects.get(pk=baked.pk).bake_started_at is None


def test_the_demo_preset_lets_the_pilot_promote_at_once_and_bakes_the_rings_after_it(
    release_manager, release, fleet
):
    plans.ensure_presets()
    rollout_id = release_manager.post("/api/rollouts", {"version": "v2.1", "plan": "demo"}).json()[
        "rollout_id"
    ]
    release_manager.post(f"/api/rollouts/{rollout_id}/start")
    report(Rollout.objects.get(rollout_id=rollout_id), "pilot", checks=10)

    assert release_manager.get(f"/api/rollouts/{rollout_id}/should_promote").json()["action"] == "PROMOTE"
    assert release_manager.post(f"/api/rollouts/{rollout_id}/promote").json()["state"] == "ring_5"
    report(Rollout.objects.get(rollout_id=rollout_id), "ring_5", checks=20)
    should = release_manager.get(f"/api/rollouts/{rollout_id}/should_promote").json()
    assert (should["action"], should["reason"]) == ("WAIT", "Baking: 1 min left of 1 min in ring_5.")


# --- Override ------------------------------------------------------------------------------------


def test_a_release_manager_may_promote_during_the_bake_with_a_reason(release_manager, baked):
    response = release_manager.post(
        f"/api/rollouts/{baked.rollout_id}/promote",
        {"override": True, "reason": "Hotfix for the ICU; bake waived by the CAB."},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["state"] == "ring_25"
    override, promote = events(baked)[-2:]
    assert (override.action, override.actor_name, override.from_ring) == (
        "OVERRIDE",
        "release_manager-user",
        "ring_5",
    )
    assert override.reason == "Hotfix for the ICU; bake waived by the CAB."
    assert override.changes == {"transition": "promote", "overridden": "WAIT"}
    assert override.evaluation["action"] == "WAIT"
    assert override.evaluation["reason"].startswith("Baking: ")
    assert Evaluation.objects.get(pk=override.evaluation["evaluation_id"]).rollout_id == baked.pk
    assert (promote.action, promote.from_ring, promote.to_ring) == ("PROMOTE", "ring_5", "ring_25")
    assert promote.changes["override"] is True
    assert promote.evaluation["evaluation_id"] == override.evaluation["evaluation_id"]
    timeline = [event["action"] for event in response.json()["events"]]
    assert timeline[-2:] == ["OVERRIDE", "PROMOTE"]


def test_an_override_goes_past_the_installed_share_and_a_pause_verdict(release_manager, started):
    report(started, "pilot", crash_free=0.985)
    DeviceDeployment.objects.filter(rollout=started, device__device_id__lt="pilot-010").update(
        state=DeploymentState.PENDING
    )

    response = release_manager.post(
        f"/api/rollouts/{started.rollout_id}/promote",
        {"override": True, "reason": "Crash is a known display driver issue, fixed in the next build."},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["state"] == "ring_5"
    assert events(started)[-2].changes["overridden"] == "PAUSE"


def test_an_operator_may_not_override(operator, baked):
    response = operator.post(
        f"/api/rollouts/{baked.rollout_id}/promote", {"override": True, "reason": "Hurry."}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["error"] == "Your role does not allow you to promote rollouts."
    assert Rollout.objects.get(pk=baked.pk).state == "ring_5"
    assert "OVERRIDE" not in actions(baked)


def test_promoting_does_not_imply_overriding(baked):
    user = UserFactory(username="promoter", role=roles.OPERATOR)
    user.user_permissions.add(Permission.objects.get(codename="promote_rollout"))
    client = client_for(user)

    response = client.post(
        f"/api/rollouts/{baked.rollout_id}/promote", {"override": True, "reason": "Hurry."}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["error"] == (
        "Your role does not allow you to override the gates; a release manager can."
    )
    assert Rollout.objects.get(pk=baked.pk).state == "ring_5"


@pytest.mark.parametrize("reason", ["", "   "])
def test_an_override_needs_a_reason(release_manager, baked, reason):
    before = actions(baked)

    response = release_manager.post(
        f"/api/rollouts/{baked.rollout_id}/promote", {"override": True, "reason": reason}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "An override needs a reason."
    assert Rollout.objects.get(pk=baked.pk).state == "ring_5"
    assert actions(baked) == before


def test_an_override_never_goes_past_a_rollback_verdict(release_manager, started):
    report(started, "pilot", crash_free=0.90)

    response = release_manager.post(
        f"/api/rollouts/{started.rollout_id}/promote",
        {"override": True, "reason": "I know better."},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["error"].startswith(
        "Cannot promote against a ROLLBACK verdict, even with an override: Critical: crash-free rate"
    )
    assert Rollout.objects.get(pk=started.pk).state == "pilot"
    event = events(started)[-1]
    assert event.action == "PROMOTE_REFUSED"
    assert event.changes["override"] is True
    assert event.changes["requested_reason"] == "I know better."
    assert event.evaluation["action"] == "ROLLBACK"
    assert "OVERRIDE" not in actions(started)


def test_an_override_on_a_finished_rollout_is_refused(release_manager, started, manager):
    lifecycle.rollout_rollback(rollout=started, actor=manager, reason="Bad build.")

    response = release_manager.post(
        f"/api/rollouts/{started.rollout_id}/promote", {"override": True, "reason": "Go."}, format="json"
    )

    assert response.status_code == 409
    assert "it is rolled back; a finished rollout cannot change." in response.json()["error"]
    assert events(started)[-1].action == "PROMOTE_REFUSED"
    assert events(started)[-1].changes["override"] is True


def test_a_release_manager_may_resume_past_a_pause_verdict_with_a_reason(release_manager, started, manager):
    report(started, "pilot", crash_free=0.97)
    lifecycle.rollout_pause(rollout=started, actor=manager)

    refused = release_manager.post(f"/api/rollouts/{started.rollout_id}/resume")
    resumed = release_manager.post(
        f"/api/rollouts/{started.rollout_id}/resume",
        {"override": True, "reason": "The crashes come from a lab device, not the release."},
        format="json",
    )

    assert refused.status_code == 409
    assert resumed.status_code == 200
    assert resumed.json()["state"] == "pilot"
    override, resume = events(started)[-2:]
    assert (override.action, override.changes) == (
        "OVERRIDE",
        {"transition": "resume", "overridden": "PAUSE"},
    )
    assert override.evaluation["action"] == "PAUSE"
    assert (resume.action, resume.changes["override"]) == ("RESUME", True)


def test_an_operator_may_not_resume_with_an_override(operator, started, manager):
    lifecycle.rollout_pause(rollout=started, actor=manager)

    response = operator.post(
        f"/api/rollouts/{started.rollout_id}/resume", {"override": True, "reason": "Go."}, format="json"
    )

    assert response.status_code == 403
    assert Rollout.objects.get(pk=started.pk).state == "paused"


def test_resuming_restarts_the_bake(manager, baked):
    lifecycle.rollout_pause(rollout=baked, actor=manager)
    Rollout.objects.filter(pk=baked.pk).update(bake_started_at=timezone.now() - dt.timedelta(minutes=4))

    lifecycle.rollout_resume(rollout=baked, actor=manager)

    rollout = Rollout.objects.get(pk=baked.pk)
    assert timezone.now() - rollout.bake_started_at < dt.timedelta(minutes=1)


# --- The detail shows install progress and bake --------------------------------------------------


def test_the_detail_shows_the_current_rings_install_progress_and_bake(viewer, baked):
    body = viewer.get(f"/api/rollouts/{baked.rollout_id}").json()

    assert body["install"]["targeted"] == 12
    assert body["install"]["installed"] == 12
    assert body["bake"] == {"started_at": None, "minutes": 5, "remaining_seconds": 300}


def test_a_finished_rollout_has_no_install_progress_or_bake(viewer, started, manager):
    lifecycle.rollout_rollback(rollout=started, actor=manager, reason="Bad build.")

    body = viewer.get(f"/api/rollouts/{started.rollout_id}").json()

    assert (body["install"], body["bake"]) == (None, None)
