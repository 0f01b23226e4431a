"""Regional stages: a plan rolls a ring out region after region, each stage deploying only its
region's devices and judged on them alone; a fleet ring is deployed once per region."""

import pytest

from rollouts.choices import DeploymentState
from rollouts.gates import Action, GateConfig
from rollouts.models import DeviceDeployment, RolloutPlan
from rollouts.services import lifecycle, plans
from saferoll.core.models import AuditEvent
from tests.factories import DeviceFactory, HealthCheckFactory, ReleaseFactory
from tests.rollouts.helpers import report

pytestmark = pytest.mark.django_db

REGIONAL_STAGES = [
    {"ring": "eu-pilot", "rings": ["pilot"], "region": "eu"},
    {"ring": "us-pilot", "rings": ["pilot"], "region": "us"},
    {"ring": "eu-ring_5", "rings": ["ring_5"], "region": "eu"},
    {"ring": "us-ring_5", "rings": ["ring_5"], "region": "us"},
]


@pytest.fixture
def regional_fleet(db) -> dict[tuple[str, str], list]:
    """(region, ring) → devices: 12 per region in pilot, 3 per region in ring_5."""
    fleet = {}
    for region in ("eu", "us"):
        for ring, count in (("pilot", 12), ("ring_5", 3)):
            fleet[region, ring] = [
                DeviceFactory(device_id=f"{region}-{ring}-{index:02d}", ring=ring, region=region)
                for index in range(count)
            ]
    return fleet


def regional_plan(**changes) -> dict:
    return {
        "name": "by-region",
        "stages": REGIONAL_STAGES,
        "gate_config": {"min_sample": 10, "min_checks": 10},
        **changes,
    }


def test_a_release_manager_creates_a_regional_plan(release_manager, regional_fleet):
    response = release_manager.post("/api/plans", regional_plan(), format="json")

    assert response.status_code == 201, response.json()
    stages = response.json()["stages"]
    assert [(stage["ring"], stage["region"]) for stage in stages] == [
        ("eu-pilot", "eu"),
        ("us-pilot", "us"),
        ("eu-ring_5", "eu"),
        ("us-ring_5", "us"),
    ]
    event = AuditEvent.objects.get(object_type="rolloutplan", action="CREATE")
    assert event.actor == release_manager.user
    assert event.changes["after"]["stages"][1]["region"] == "us"


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            [{"ring": "pilot", "region": "eu"}, {"ring": "mars-pilot", "rings": ["pilot"], "region": "mars"}],
            "Stage 2: no device is in region 'mars'; known regions: eu, us.",
        ),
        ([{"ring": "pilot", "region": "  "}], "Stage 1: region must be the name of a region of the fleet."),
        ([{"ring": "pilot", "region": 7}], "Stage 1: region must be the name of a region of the fleet."),
        (
            [{"ring": "pilot", "region": "eu"}, {"ring": "eu-again", "rings": ["pilot"], "region": "eu"}],
            "Stage 2 deploys to pilot in region eu a second time.",
        ),
        # A stage without a region covers every region, so it overlaps a regional one of its ring.
        (
            [{"ring": "pilot"}, {"ring": "us-pilot", "rings": ["pilot"], "region": "us"}],
            "Stage 2 deploys to pilot in region us a second time.",
        ),
        (
            [{"ring": "eu-pilot", "rings": ["pilot"], "region": "eu"}, {"ring": "pilot"}],
            "Stage 2 deploys to pilot a second time.",
        ),
    ],
)
def test_it_refuses_a_regional_stage_that_does_not_hold_together(
    release_manager, regional_fleet, stages, message
):
    response = release_manager.post("/api/plans", regional_plan(stages=stages), format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "Invalid input.", "fields": {"stages": [message]}}
    assert not RolloutPlan.objects.filter(name="by-region").exists()
    assert not AuditEvent.objects.filter(object_type="rolloutplan").exists()


def test_it_says_when_no_device_has_a_region(release_manager, db):
    DeviceFactory(region="")

    response = release_manager.post(
        "/api/plans", regional_plan(stages=[{"ring": "pilot", "region": "eu"}]), format="json"
    )

    assert response.json()["fields"]["stages"] == [
        "Stage 1: no device is in region 'eu'; known regions: none (no device has a region)."
    ]


def test_an_operator_cannot_write_a_regional_plan(operator, regional_fleet):
    response = operator.post("/api/plans", regional_plan(), format="json")

    assert response.status_code == 403
    assert not RolloutPlan.objects.filter(name="by-region").exists()


def test_each_regional_stage_deploys_only_its_regions_devices(regional_fleet, manager):
    plan = plans.plan_create(actor=manager, **regional_plan())
    rollout = lifecycle.rollout_create(release=ReleaseFactory(version="v2.1"), plan=plan, actor=manager)

    lifecycle.rollout_start(rollout=rollout, actor=manager)

    eu_pilot = {device.pk for device in regional_fleet["eu", "pilot"]}
    deployed = DeviceDeployment.objects.filter(rollout=rollout)
    assert set(deployed.values_list("device_id", flat=True)) == eu_pilot
    assert set(deployed.values_list("ring", flat=True)) == {"eu-pilot"}
    started = AuditEvent.objects.get(rollout=rollout, action="START")
    assert started.changes["deployments"]["region"] == "eu"
    assert started.changes["deployments"]["targeted"] == 12

    report(rollout, "eu-pilot")
    lifecycle.rollout_promote(rollout=rollout, actor=manager)

    rollout.refresh_from_db()
    assert rollout.current_ring == "us-pilot"
    us = DeviceDeployment.objects.filter(rollout=rollout, ring="us-pilot")
    assert set(us.values_list("device__region", flat=True)) == {"us"}
    assert us.count() == 12
    assert set(us.values_list("state", flat=True)) == {DeploymentState.PENDING}


def test_the_gates_judge_a_regional_stage_on_its_regions_devices_alone(regional_fleet, manager):
    plan = plans.plan_create(actor=manager, **regional_plan())
    release = ReleaseFactory(version="v2.1")
    rollout = lifecycle.rollout_start(
        rollout=lifecycle.rollout_create(release=release, plan=plan, actor=manager), actor=manager
    )
    report(rollout, "eu-pilot")
    # The other region's pilot devices crash on the same version (say, a bench test of it):
    # they are not part of this stage, so they must not count for or against it.
    for device in regional_fleet["us", "pilot"]:
        HealthCheckFactory(device=device, ring="pilot", version=release.version, crash_free=0.5)

    decision = lifecycle.rollout_evaluate(rollout=rollout, config=GateConfig.from_dict(rollout.gate_config))

    assert decision.action == Action.PROMOTE, decision.reason
    assert decision.health.total_devices == 12
    assert decision.health.crash_free_rate == pytest.approx(0.995)
