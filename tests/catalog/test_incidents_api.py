"""The incidents API: people on call open and resolve incidents; everyone reads them."""

import pytest

from rollouts.choices import IncidentStatus, RolloutStatus
from rollouts.models import Incident
from saferoll.core import roles
from saferoll.core.models import AuditEvent
from tests.factories import IncidentFactory, ReleaseFactory, RolloutFactory

pytestmark = pytest.mark.django_db


def incident_events(incident_id, action: str):
    return AuditEvent.objects.filter(object_type="incident", object_id=str(incident_id), action=action)


def test_it_opens_an_incident_linked_to_a_release(operator):
    ReleaseFactory(version="v2.1")

    response = operator.post(
        "/api/incidents",
        {"severity": "sev2", "title": "Guide freezes", "description": "Ward 4", "release": "v2.1"},
        format="json",
    )

    assert response.status_code == 201, response.data
    body = response.json()
    assert body["severity"] == "sev2"
    assert body["status"] == "open"
    assert body["release"] == "v2.1"
    assert body["opened_by"] == operator.user.username
    event = incident_events(body["id"], "OPEN").get()
    assert event.actor_name == operator.user.username
    assert event.changes["after"]["title"] == "Guide freezes"


def test_it_does_not_pause_rollouts_when_a_sev1_is_opened(operator):
    release = ReleaseFactory(version="v2.1")
    rollout = RolloutFactory(release=release, status=RolloutStatus.ACTIVE, current_ring="pilot")

    response = operator.post(
        "/api/incidents", {"severity": "sev1", "title": "TVs reboot", "release": "v2.1"}, format="json"
    )

    assert response.status_code == 201
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ACTIVE


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"severity": "sev4", "title": "x"}, "severity"),
        ({"severity": "sev1"}, "title"),
        ({"severity": "sev1", "title": "x", "release": "v0.0"}, "release"),
        ({"severity": "sev1", "title": "x", "release": "v\x00"}, "release"),
    ],
)
def test_it_refuses_invalid_incidents_field_by_field(operator, payload, field):
    response = operator.post("/api/incidents", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not Incident.objects.exists()


def test_it_resolves_an_incident_once(operator):
    incident = IncidentFactory(title="Guide freezes")

    first = operator.post(
        f"/api/incidents/{incident.pk}/resolve", {"reason": "Hotfix deployed"}, format="json"
    )
    second = operator.post(f"/api/incidents/{incident.pk}/resolve", {}, format="json")

    assert first.status_code == 200
    assert first.json()["status"] == "resolved"
    assert first.json()["resolved_by"] == operator.user.username
    assert first.json()["resolved_at"]
    assert second.status_code == 409
    assert second.json()["error"] == f"Incident {incident.pk} is already resolved."
    event = incident_events(incident.pk, "RESOLVE").get()
    assert event.reason == "Hotfix deployed"
    assert event.changes["before"]["status"] == "open"
    assert event.changes["after"]["status"] == "resolved"


def test_it_lists_incidents_with_filters(viewer):
    release = ReleaseFactory(version="v2.1")
    IncidentFactory(severity="sev1", title="A", release=release)
    IncidentFactory(severity="sev3", title="B", status=IncidentStatus.RESOLVED)

    everything = viewer.get("/api/incidents").json()
    sev1 = viewer.get("/api/incidents", {"severity": "sev1"}).json()
    open_ = viewer.get("/api/incidents", {"status": "open"}).json()
    by_release = viewer.get("/api/incidents", {"release": "v2.1"}).json()

    assert everything["count"] == 2
    assert [item["title"] for item in sev1["results"]] == ["A"]
    assert [item["title"] for item in open_["results"]] == ["A"]
    assert [item["title"] for item in by_release["results"]] == ["A"]
    assert viewer.get(f"/api/incidents/{Incident.objects.get(title='B').pk}").json()["status"] == "resolved"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # Offsets Python reads but PostgreSQL would refuse: the moment is sent in UTC.
        ({"opened_after": "2000-01-01T00:00:00+23:59"}, 200),
        ({"opened_before": "2999-01-01T00:00:00-23:59"}, 200),
        ({"opened_after": "0001-01-01T00:00:00+05:00"}, 400),
    ],
)
def test_it_filters_incidents_by_any_moment_python_reads(viewer, query, expected):
    IncidentFactory(title="A")

    response = viewer.get("/api/incidents", query)

    assert response.status_code == expected
    if expected == 200:
        assert [item["title"] for item in response.json()["results"]] == ["A"]


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (roles.VIEWER, False),
        (roles.OPERATOR, True),
        (roles.RELEASE_MANAGER, True),
        (roles.ADMIN, True),
    ],
)
def test_it_lets_operators_and_above_open_and_resolve_incidents(persona, role, allowed):
    client = persona(role)
    incident = IncidentFactory()

    opened = client.post("/api/incidents", {"severity": "sev3", "title": "Flicker"}, format="json")
    resolved = client.post(f"/api/incidents/{incident.pk}/resolve", {}, format="json")
    missing = client.post("/api/incidents/999999/resolve", {}, format="json")

    assert opened.status_code == (201 if allowed else 403)
    assert resolved.status_code == (200 if allowed else 403)
    assert missing.status_code == (404 if allowed else 403)
    assert Incident.objects.filter(title="Flicker").exists() is allowed
    assert incident_events(incident.pk, "RESOLVE").exists() is allowed
    assert client.get("/api/incidents").status_code == 200


def test_it_has_no_update_or_delete(admin_client):
    incident = IncidentFactory()

    assert (
        admin_client.patch(f"/api/incidents/{incident.pk}", {"title": "x"}, format="json").status_code == 405
    )
    assert admin_client.delete(f"/api/incidents/{incident.pk}").status_code == 405
