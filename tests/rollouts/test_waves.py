"""Waves: a plan may cap how many of a stage's devices are told to install per minute (fixed, or
growing each minute like AWS IoT Jobs' exponentialRate); the rest wait, told "none"."""

import datetime as dt

import pytest
from rest_framework.test import APIClient

from rollouts.models import DeviceDeployment, Rollout
from rollouts.services import lifecycle
from rollouts.services.deployments import deployments_release_waves, device_desired_state
from rollouts.waves import waves_released_by
from saferoll.core.models import AuditEvent
from tests.factories import DeviceFactory, RolloutPlanFactory, device_token
from tests.rollouts.conftest import FLEET
from tests.rollouts.helpers import report
from tests.rollouts.test_concurrency import race

pytestmark = pytest.mark.django_db

MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def big_pilot(fleet):
    """Pilot grown to 100 devices, enough for several waves."""
    extra = [
        DeviceFactory(ring="pilot", device_id=f"pilot-{index:03d}") for index in range(FLEET["pilot"], 100)
    ]
    return fleet["pilot"] + extra


def start_with(waves: dict, release, manager) -> Rollout:
    plan = RolloutPlanFactory(name=f"waves-{len(Rollout.objects.all())}", waves=waves)
    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    return lifecycle.rollout_start(rollout=rollout, actor=manager)


def released(rollout: Rollout, ring: str = "pilot") -> list[str]:
    return list(
        DeviceDeployment.objects.filter(rollout=rollout, ring=ring, released_at__isnull=False)
        .order_by("device__device_id")
        .values_list("device__device_id", flat=True)
    )


@pytest.mark.parametrize(
    ("waves", "minute", "expected"),
    [
        ({"per_minute": 10, "growth": 1}, 0, 10),
        ({"per_minute": 10, "growth": 1}, 4, 50),
        ({"per_minute": 10, "growth": 2}, 0, 10),
        ({"per_minute": 10, "growth": 2}, 3, 10 + 20 + 40 + 80),
        ({"per_minute": 10, "growth": 2, "max_per_minute": 25}, 3, 10 + 20 + 25 + 25),
        ({"per_minute": 1, "growth": 1.5}, 3, 1 + 1 + 2 + 3),
        ({"per_minute": 10, "growth": 10}, 10_000, 1000),
    ],
)
def test_the_schedule_counts_the_devices_released_by_the_end_of_each_minute(waves, minute, expected):
    assert waves_released_by(waves, minute, limit=1000) == expected


def test_without_waves_the_whole_stage_is_released_at_the_start(started):
    assert not DeviceDeployment.objects.filter(rollout=started, released_at__isnull=True).exists()
    assert deployments_release_waves() == 0


def test_the_first_wave_is_released_at_the_start_in_device_order(big_pilot, release, manager):
    rollout = start_with({"per_minute": 30}, release, manager)

    first = released(rollout)
    assert len(first) == 30
    every = sorted(
        DeviceDeployment.objects.filter(rollout=rollout).values_list("device__device_id", flat=True)
    )
    by_pk = list(
        DeviceDeployment.objects.filter(rollout=rollout)
        .order_by("device_id")
        .values_list("device__device_id", flat=True)
    )
    assert first == sorted(by_pk[:30])
    assert len(every) == 100


def test_a_fixed_rate_releases_the_next_devices_each_minute(big_pilot, release, manager):
    rollout = start_with({"per_minute": 30}, release, manager)
    start = rollout.stage_started_at

    assert deployments_release_waves(now=start + dt.timedelta(seconds=59)) == 0
    assert deployments_release_waves(now=start + MINUTE) == 30
    assert len(released(rollout)) == 60
    assert deployments_release_waves(now=start + 2 * MINUTE) == 30
    assert deployments_release_waves(now=start + 3 * MINUTE) == 10
    assert len(released(rollout)) == 100
    assert deployments_release_waves(now=start + 4 * MINUTE) == 0


def test_an_exponential_rate_doubles_the_wave_each_minute_up_to_its_cap(big_pilot, release, manager):
    rollout = start_with({"per_minute": 5, "growth": 2, "max_per_minute": 30}, release, manager)
    start = rollout.stage_started_at

    sizes = [deployments_release_waves(now=start + minute * MINUTE) for minute in range(1, 6)]

    assert len(released(rollout)) == 100
    assert sizes == [10, 20, 30, 30, 5]


def test_running_the_release_twice_releases_a_wave_once(big_pilot, release, manager):
    rollout = start_with({"per_minute": 25}, release, manager)
    later = rollout.stage_started_at + MINUTE + dt.timedelta(seconds=5)

    assert deployments_release_waves(now=later) == 25
    assert deployments_release_waves(now=later) == 0
    assert len(released(rollout)) == 50
    events = AuditEvent.objects.filter(action="WAVE_RELEASED")
    assert events.count() == 1
    event = events.get()
    assert (event.actor, event.object_id) == (None, str(rollout.pk))
    assert event.reason == "Wave 2 of pilot: 25 more devices told to install v2.1 (50 of 100 released)."
    # Kept out of the rollout's timeline: its transitions stay readable.
    assert event.rollout is None


def test_a_paused_rollout_releases_nothing_and_ramps_up_again_after_resuming(big_pilot, release, manager):
    rollout = start_with({"per_minute": 20}, release, manager)
    # The first wave went out ten minutes ago, and the rollout was paused right after it.
    start = rollout.stage_started_at - 10 * MINUTE
    Rollout.objects.filter(pk=rollout.pk).update(stage_started_at=start)
    DeviceDeployment.objects.filter(rollout=rollout, released_at__isnull=False).update(released_at=start)
    lifecycle.rollout_pause(rollout=rollout, actor=manager, reason="Looking at a report")

    assert deployments_release_waves(now=start + 5 * MINUTE) == 0
    assert len(released(rollout)) == 20

    lifecycle.rollout_resume(rollout=rollout, actor=manager, reason="Report was a false alarm")
    rollout.refresh_from_db()
    assert deployments_release_waves(now=rollout.stage_started_at) == 20
    assert deployments_release_waves(now=rollout.stage_started_at + MINUTE) == 20
    assert len(released(rollout)) == 60


def test_a_promoted_stage_starts_its_own_waves(fleet, release, manager):
    rollout = start_with({"per_minute": 4}, release, manager)
    DeviceDeployment.objects.filter(rollout=rollout).update(released_at=rollout.stage_started_at)
    report(rollout, "pilot")
    lifecycle.rollout_promote(rollout=rollout, actor=manager)

    assert len(released(rollout, "ring_5")) == 4
    assert deployments_release_waves(now=rollout.stage_started_at + MINUTE) == 4
    assert len(released(rollout, "ring_5")) == 8


def test_a_device_is_told_to_install_only_once_its_wave_is_released(big_pilot, release, manager):
    rollout = start_with({"per_minute": 50}, release, manager)
    start = rollout.stage_started_at
    waiting = DeviceDeployment.objects.filter(rollout=rollout, released_at__isnull=True).select_related(
        "device"
    )
    device = waiting.order_by("device_id").first().device

    before = device_desired_state(device=device, now=start + dt.timedelta(seconds=30))
    deployments_release_waves(now=start + MINUTE)
    after = device_desired_state(device=device, now=start + MINUTE)

    assert (before.action, before.version) == ("none", "v2.0")
    assert (after.action, after.version) == ("install", "v2.1")


def test_the_device_api_says_none_until_the_wave_and_install_after(big_pilot, release, manager):
    rollout = start_with({"per_minute": 50}, release, manager)
    deployment = (
        DeviceDeployment.objects.filter(rollout=rollout, released_at__isnull=True)
        .select_related("device")
        .order_by("device_id")
        .first()
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Device {device_token(deployment.device)}")

    assert client.get("/api/device/desired-state").json() == {"action": "none", "version": "v2.0"}
    DeviceDeployment.objects.filter(pk=deployment.pk).update(released_at=rollout.stage_started_at)
    assert client.get("/api/device/desired-state").json()["action"] == "install"


def test_the_api_and_portal_show_the_waves_released_so_far(big_pilot, release, manager, viewer, client):
    rollout = start_with({"per_minute": 30, "growth": 2}, release, manager)

    body = viewer.get(f"/api/rollouts/{rollout.rollout_id}").json()

    assert body["waves"] == {"per_minute": 30, "growth": 2}
    assert body["deployments"]["by_ring"]["pilot"]["released"] == 30
    progress = body["wave_progress"]
    assert (progress["ring"], progress["wave"], progress["released"], progress["targeted"]) == (
        "pilot",
        1,
        30,
        100,
    )
    assert progress["sentence"] == "Wave 1: 30 of 100 devices released (30/min, ×2 each minute)"
    client.force_login(viewer.user)
    page = client.get(f"/rollouts/{rollout.rollout_id}").content.decode()
    assert "Wave 1: 30 of 100 devices released (30/min, ×2 each minute)." in page


NEW_PLAN = {"name": "waved", "stages": [{"ring": "pilot"}, {"ring": "ring_5"}]}


@pytest.mark.parametrize(
    ("waves", "error"),
    [
        ({"per_minute": 0}, "waves.per_minute must be a whole number of devices, at least 1."),
        ({"per_minute": -5}, "waves.per_minute must be a whole number of devices, at least 1."),
        ({"per_minute": "50"}, "waves.per_minute must be a whole number of devices, at least 1."),
        ({"per_minute": 2.5}, "waves.per_minute must be a whole number of devices, at least 1."),
        ({"per_minute": True}, "waves.per_minute must be a whole number of devices, at least 1."),
        ({"growth": 2}, "waves.per_minute must be a whole number of devices, at least 1."),
        ({"per_minute": 50, "growth": 0.5}, "waves.growth must be a number from 1 (a fixed rate) to 10."),
        ({"per_minute": 50, "growth": "fast"}, "waves.growth must be a number from 1 (a fixed rate) to 10."),
        ({"per_minute": 50, "growth": 1e308}, "waves.growth must be a number from 1 (a fixed rate) to 10."),
        (
            {"per_minute": 50, "max_per_minute": 10},
            "waves.max_per_minute must be a whole number of devices, at least per_minute (50).",
        ),
        (
            {"per_minute": 50, "rate": 2},
            "waves has unknown setting(s): rate; it takes per_minute, growth and max_per_minute.",
        ),
        ([50], 'waves must be an object such as {"per_minute": 50, "growth": 2}.'),
    ],
)
def test_a_plan_with_bad_waves_is_refused_with_a_sentence(release_manager, waves, error):
    response = release_manager.post("/api/plans", {**NEW_PLAN, "waves": waves}, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "Invalid input.", "fields": {"waves": [error]}}
    assert not AuditEvent.objects.filter(object_type="rolloutplan").exists()


def test_a_change_to_bad_waves_changes_nothing(release_manager, plan):
    response = release_manager.patch("/api/plans/test-plan", {"waves": {"per_minute": 0}}, format="json")

    assert response.status_code == 400
    plan.refresh_from_db()
    assert plan.waves == {}
    assert not AuditEvent.objects.filter(object_type="rolloutplan").exists()


def test_a_release_manager_sets_waves_with_the_default_growth_and_it_is_audited(release_manager, plan):
    response = release_manager.patch("/api/plans/test-plan", {"waves": {"per_minute": 50}}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["waves"] == {"per_minute": 50, "growth": 1}
    event = AuditEvent.objects.get(object_type="rolloutplan")
    assert (event.action, event.actor) == ("UPDATE", release_manager.user)
    assert event.changes == {"before": {"waves": {}}, "after": {"waves": {"per_minute": 50, "growth": 1}}}
    # An empty object takes the waves away again: the whole stage at once.
    assert release_manager.patch("/api/plans/test-plan", {"waves": {}}, format="json").json()["waves"] == {}


def test_an_operator_cannot_set_waves(operator, plan):
    response = operator.patch("/api/plans/test-plan", {"waves": {"per_minute": 50}}, format="json")

    assert response.status_code == 403
    plan.refresh_from_db()
    assert plan.waves == {}


@pytest.mark.django_db(transaction=True)
def test_two_workers_releasing_at_once_release_one_wave(big_pilot, release, manager):
    rollout = start_with({"per_minute": 10}, release, manager)
    later = rollout.stage_started_at + MINUTE
    counts: list[int] = []

    outcomes = race(
        rollout,
        {
            "first": lambda seen: counts.append(deployments_release_waves(now=later)),
            "second": lambda seen: counts.append(deployments_release_waves(now=later)),
        },
    )

    assert set(outcomes.values()) == {"done"}
    assert sorted(counts) == [0, 10]
    assert len(released(rollout)) == 20
    assert AuditEvent.objects.filter(action="WAVE_RELEASED").count() == 1
