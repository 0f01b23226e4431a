import pytest

from devices import services
from devices.models import Cohort, CohortMembership
from rollouts.choices import RolloutStatus
from saferoll.core.models import AuditEvent
from tests.factories import CohortFactory, DeviceFactory, RolloutFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def devices(db):
    return [DeviceFactory(device_id=f"tv-{n}") for n in range(1, 6)]


@pytest.fixture
def canary(devices):
    cohort = CohortFactory(name="canary", kind="canary", description="Low-risk sites")
    cohort.devices.add(devices[0])
    return cohort


def members_of(cohort: Cohort) -> list[str]:
    return sorted(cohort.devices.values_list("device_id", flat=True))


def test_it_lists_cohorts_with_their_size(viewer, canary):
    CohortFactory(name="pilot-group", kind="pilot")

    response = viewer.get("/api/cohorts")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(row["name"], row["kind"], row["device_count"]) for row in rows] == [
        ("canary", "canary", 1),
        ("pilot-group", "pilot", 0),
    ]


def test_it_filters_cohorts_by_kind(viewer, canary):
    CohortFactory(name="pilot-group", kind="pilot")

    response = viewer.get("/api/cohorts", {"kind": "pilot"})

    assert [row["name"] for row in response.json()["results"]] == ["pilot-group"]


def test_it_shows_a_cohort_with_its_members(viewer, canary):
    response = viewer.get("/api/cohorts/canary")

    assert response.status_code == 200
    assert response.json()["members"] == ["tv-1"]
    assert response.json()["description"] == "Low-risk sites"


def test_it_answers_an_unknown_cohort_with_404(viewer):
    response = viewer.get("/api/cohorts/nope")

    assert response.status_code == 404
    assert response.json() == {"error": "No cohort named nope."}


def test_it_creates_a_cohort_with_first_members_and_audits_them(release_manager, devices):
    response = release_manager.post(
        "/api/cohorts", {"name": "pilot-a", "kind": "pilot", "device_ids": ["tv-2", "tv-1"]}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["members"] == ["tv-1", "tv-2"]
    cohort = Cohort.objects.get(name="pilot-a")
    assert set(CohortMembership.objects.filter(cohort=cohort).values_list("added_by", flat=True)) == {
        release_manager.user.pk
    }
    event = AuditEvent.objects.get()
    assert (event.action, event.object_type, event.actor) == ("CREATE", "cohort", release_manager.user)
    assert event.changes["added"] == ["tv-1", "tv-2"]
    assert event.changes["after"]["kind"] == "pilot"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": "has/slash"}, "name"),
        ({"name": "x" * 51}, "name"),
        ({"name": "ok", "kind": "beta"}, "kind"),
        ({"name": "ok", "device_ids": "tv-1"}, "device_ids"),
        ({"name": "ok", "device_ids": ["tv-1", "ghost"]}, "device_ids"),
        ({"name": "canary"}, "name"),
    ],
)
def test_it_refuses_bad_cohorts_with_400(release_manager, canary, payload, field):
    response = release_manager.post("/api/cohorts", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert Cohort.objects.count() == 1


def test_it_updates_a_cohort_and_audits_before_and_after(release_manager, canary):
    response = release_manager.patch("/api/cohorts/canary", {"description": "Two quiet sites"}, format="json")

    assert response.status_code == 200
    assert response.json()["description"] == "Two quiet sites"
    event = AuditEvent.objects.get()
    assert event.action == "UPDATE"
    assert event.changes == {
        "before": {"description": "Low-risk sites"},
        "after": {"description": "Two quiet sites"},
    }


@pytest.mark.parametrize("payload", [{}, {"name": "renamed"}, {"kind": "beta"}])
def test_it_refuses_bad_cohort_updates_with_400(release_manager, canary, payload):
    response = release_manager.patch("/api/cohorts/canary", payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]
    assert not AuditEvent.objects.exists()


def test_it_changes_members_and_audits_the_device_ids(release_manager, canary):
    response = release_manager.post(
        "/api/cohorts/canary/members", {"add": ["tv-2", "tv-3"], "remove": ["tv-1"]}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "cohort": "canary",
        "added": ["tv-2", "tv-3"],
        "removed": ["tv-1"],
        "device_count": 2,
    }
    assert members_of(canary) == ["tv-2", "tv-3"]
    event = AuditEvent.objects.get()
    assert (event.action, event.object_type, event.object_repr) == ("CHANGE_MEMBERS", "cohort", "canary")
    assert event.actor == release_manager.user
    assert event.actor_name == release_manager.user.username
    assert event.created_at is not None
    assert event.changes == {"added": ["tv-2", "tv-3"], "removed": ["tv-1"]}


def test_it_lists_only_real_membership_changes(release_manager, canary):
    response = release_manager.post(
        "/api/cohorts/canary/members", {"add": ["tv-1", "tv-2"], "remove": ["tv-4"]}, format="json"
    )

    assert response.json()["added"] == ["tv-2"]
    assert response.json()["removed"] == []
    assert AuditEvent.objects.get().changes == {"added": ["tv-2"], "removed": []}


def test_it_records_nothing_when_membership_does_not_change(release_manager, canary):
    response = release_manager.post("/api/cohorts/canary/members", {"add": ["tv-1"]}, format="json")

    assert response.status_code == 200
    assert not AuditEvent.objects.exists()


def test_it_refuses_unknown_device_ids_listing_them(release_manager, canary):
    response = release_manager.post(
        "/api/cohorts/canary/members", {"add": ["tv-2", "ghost-1"], "remove": ["ghost-2"]}, format="json"
    )

    assert response.status_code == 400
    fields = response.json()["fields"]
    assert "ghost-1" in fields["add"][0]
    assert "tv-2" not in fields["add"][0]
    assert "ghost-2" in fields["remove"][0]
    assert members_of(canary) == ["tv-1"]
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"add": [], "remove": []},
        {"add": "tv-2"},
        {"add": [["tv-2"]]},
        {"add": ["tv-2"], "remove": ["tv-2"]},
    ],
)
def test_it_refuses_bad_membership_changes_with_400(release_manager, canary, payload):
    response = release_manager.post("/api/cohorts/canary/members", payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]
    assert members_of(canary) == ["tv-1"]


def test_it_keeps_a_device_in_one_cohort_of_a_release_rollout(release_manager, canary, devices):
    """002 A2: a device belongs to at most one active rollout cohort for a given release."""
    pilot = CohortFactory(name="pilot-group")
    rollout = RolloutFactory(status=RolloutStatus.ACTIVE, current_ring="canary")
    rollout.stages = [{"ring": "canary", "cohort": "canary"}, {"ring": "pilot", "cohort": "pilot-group"}]
    rollout.save()

    response = release_manager.post(
        "/api/cohorts/pilot-group/members", {"add": ["tv-1", "tv-2"]}, format="json"
    )

    assert response.status_code == 400
    assert "tv-1" in response.json()["fields"]["add"][0]
    assert members_of(pilot) == []


def test_it_lets_the_admin_change_members_with_device_rows(release_manager, canary, devices):
    result = services.cohort_change_members(
        cohort=canary, add=[devices[1]], remove=[devices[0]], actor=release_manager.user
    )

    assert result == {"added": ["tv-2"], "removed": ["tv-1"]}
    assert AuditEvent.objects.get().changes == {"added": ["tv-2"], "removed": ["tv-1"]}


def test_it_checks_first_members_of_a_cohort_a_rollout_already_names(release_manager, canary):
    rollout = RolloutFactory(status=RolloutStatus.PAUSED)
    rollout.stages = [{"ring": "canary", "cohort": "canary"}, {"ring": "pilot", "cohort": "pilot-group"}]
    rollout.save()

    response = release_manager.post(
        "/api/cohorts", {"name": "pilot-group", "device_ids": ["tv-1"]}, format="json"
    )

    assert response.status_code == 400
    assert "tv-1" in response.json()["fields"]["device_ids"][0]
    assert not Cohort.objects.filter(name="pilot-group").exists()


def test_it_lets_a_device_join_cohorts_of_finished_rollouts(release_manager, canary):
    rollout = RolloutFactory(status=RolloutStatus.COMPLETED)
    rollout.stages = [{"ring": "canary", "cohort": "canary"}, {"ring": "pilot", "cohort": "pilot-group"}]
    rollout.save()

    response = release_manager.post(
        "/api/cohorts", {"name": "pilot-group", "device_ids": ["tv-1"]}, format="json"
    )

    assert response.status_code == 201
