"""The audit log API: everything SafeRoll and its people did, readable and never writable."""

import datetime as dt

import pytest
from django.utils import timezone

from saferoll.core import roles
from saferoll.core.audit import audit_record
from saferoll.core.models import AuditEvent
from tests.factories import ReleaseFactory, RolloutFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(db):
    alice = UserFactory(username="alice")
    release = ReleaseFactory(version="v2.1")
    rollout = RolloutFactory(release=release)
    first = audit_record(actor=alice, action="CREATE", obj=release, changes={"before": {}, "after": {"x": 1}})
    second = audit_record(actor=alice, action="START", obj=rollout, rollout=rollout, to_ring="pilot")
    third = audit_record(
        actor=None, action="AUTO_ROLLBACK", obj=rollout, rollout=rollout, reason="Crash-free 0.9"
    )
    return {"release": release, "rollout": rollout, "events": [first, second, third]}


def ids(response) -> list[int]:
    return [item["id"] for item in response.json()["results"]]


def test_it_lists_events_newest_first_with_their_detail(viewer, events):
    response = viewer.get("/api/audit-events")

    assert response.status_code == 200
    assert ids(response) == [event.pk for event in reversed(events["events"])]
    newest = response.json()["results"][0]
    assert newest["actor"] == "saferoll"
    assert newest["action"] == "AUTO_ROLLBACK"
    assert newest["rollout"] == events["rollout"].rollout_id
    assert newest["reason"] == "Crash-free 0.9"


def test_it_gets_one_event(viewer, events):
    event = events["events"][0]

    response = viewer.get(f"/api/audit-events/{event.pk}")

    assert response.status_code == 200
    assert response.json()["changes"] == {"before": {}, "after": {"x": 1}}
    assert response.json()["object_type"] == "release"
    assert viewer.get("/api/audit-events/999999").status_code == 404


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "START"}, [1]),
        ({"actor": "alice"}, [1, 0]),
        ({"actor": "saferoll"}, [2]),
        ({"object_type": "release"}, [0]),
        ({"object_type": "rollout", "action": "AUTO_ROLLBACK"}, [2]),
    ],
)
def test_it_filters_events(viewer, events, params, expected):
    response = viewer.get("/api/audit-events", params)

    assert ids(response) == [events["events"][index].pk for index in expected]


def test_it_filters_by_rollout_and_object_id(viewer, events):
    rollout = events["rollout"]

    by_rollout = viewer.get("/api/audit-events", {"rollout": rollout.rollout_id})
    by_object = viewer.get("/api/audit-events", {"object_type": "release", "object_id": events["release"].pk})

    assert ids(by_rollout) == [events["events"][2].pk, events["events"][1].pk]
    assert ids(by_object) == [events["events"][0].pk]


def test_it_filters_by_time(viewer, events):
    now = timezone.now()
    after = (now + dt.timedelta(minutes=1)).isoformat()
    before = (now - dt.timedelta(minutes=1)).isoformat()

    assert ids(viewer.get("/api/audit-events", {"created_after": after})) == []
    assert ids(viewer.get("/api/audit-events", {"created_before": before})) == []
    assert len(ids(viewer.get("/api/audit-events", {"created_after": before, "created_before": after}))) == 3


def test_it_filters_by_a_moment_whose_offset_postgresql_would_refuse(viewer, events):
    response = viewer.get("/api/audit-events", {"created_before": "2999-01-01T00:00:00+23:59"})

    assert response.status_code == 200
    assert len(ids(response)) == 3


def test_it_refuses_a_moment_that_leaves_the_calendar_once_in_utc(viewer, events):
    response = viewer.get("/api/audit-events", {"created_before": "9999-12-31T23:59:59-05:00"})

    assert response.status_code == 400
    assert response.json()["fields"] == {
        "created_before": ["This moment falls outside the years 1 to 9999 once converted to UTC."]
    }


@pytest.mark.parametrize("role", roles.ROLES)
def test_it_has_no_write_method_for_anyone(persona, events, role):
    client = persona(role)
    event = events["events"][0]

    assert client.post("/api/audit-events", {"action": "FORGED"}, format="json").status_code == 405
    assert client.put(f"/api/audit-events/{event.pk}", {"reason": "x"}, format="json").status_code == 405
    assert client.patch(f"/api/audit-events/{event.pk}", {"reason": "x"}, format="json").status_code == 405
    assert client.delete(f"/api/audit-events/{event.pk}").status_code == 405
    assert AuditEvent.objects.count() == 3
    assert AuditEvent.objects.get(pk=event.pk).reason == ""


def test_it_refuses_people_without_a_role(events):
    from tests.conftest import client_for

    assert client_for(UserFactory(username="nobody")).get("/api/audit-events").status_code == 403
