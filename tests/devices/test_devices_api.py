import pytest

from devices.choices import DeviceStatus
from devices.models import Device, hash_token
from rollouts.choices import DeploymentState
from saferoll.core.models import AuditEvent
from tests.devices.conftest import client_for_token
from tests.factories import (
    CohortFactory,
    DeviceDeploymentFactory,
    DeviceFactory,
    HardwareVariantFactory,
    device_token,
)

pytestmark = pytest.mark.django_db


def device_ids(response) -> list[str]:
    return [row["device_id"] for row in response.json()["results"]]


# --- list and filters ----------------------------------------------------------------------------


@pytest.fixture
def fleet(db):
    gen4 = HardwareVariantFactory(name="tv-55-gen4")
    DeviceFactory(device_id="a-pilot", ring="pilot", site="Ward 1", region="eu-west", app_version="v2.0")
    DeviceFactory(device_id="b-ring5", ring="ring_5", site="Ward 2", region="eu-west", app_version="v2.1")
    DeviceFactory(
        device_id="c-ring25", ring="ring_25", region="us-east", variant=gen4, status=DeviceStatus.OFFLINE
    )
    DeviceFactory(device_id="d-ring100", ring="ring_100", region="us-east", status=DeviceStatus.INVESTIGATE)


def test_it_lists_devices_paginated(viewer, fleet):
    response = viewer.get("/api/devices", {"page_size": 2})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    assert device_ids(response) == ["a-pilot", "b-ring5"]
    assert body["next"]
    row = body["results"][0]
    assert row["ring"] == "pilot"
    assert row["version"] == "v2.0"
    assert row["variant"] == "tv-55-gen3"
    assert row["has_credential"] is True
    assert row["deployment_state"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"ring": "ring_5"}, ["b-ring5"]),
        ({"status": "offline"}, ["c-ring25"]),
        ({"status": "investigate"}, ["d-ring100"]),
        ({"variant": "tv-55-gen4"}, ["c-ring25"]),
        ({"site": "Ward 2"}, ["b-ring5"]),
        ({"region": "us-east"}, ["c-ring25", "d-ring100"]),
        ({"version": "v2.1"}, ["b-ring5"]),
        ({"search": "RING"}, ["b-ring5", "c-ring25", "d-ring100"]),
        ({"region": "us-east", "status": "offline"}, ["c-ring25"]),
        ({"ordering": "-device_id", "region": "eu-west"}, ["b-ring5", "a-pilot"]),
    ],
)
def test_it_filters_the_device_list(viewer, fleet, query, expected):
    response = viewer.get("/api/devices", query)

    assert response.status_code == 200
    assert device_ids(response) == expected


def test_it_filters_devices_by_cohort(viewer, fleet):
    cohort = CohortFactory(name="canary")
    cohort.devices.add(Device.objects.get(device_id="c-ring25"))

    response = viewer.get("/api/devices", {"cohort": "canary"})

    assert device_ids(response) == ["c-ring25"]


def test_it_refuses_an_unknown_status_filter_with_400(viewer, fleet):
    response = viewer.get("/api/devices", {"status": "asleep"})

    assert response.status_code == 400
    assert "status" in response.json()["fields"]


def test_it_shows_the_newest_deployment_state_in_the_list(viewer, device, rollout):
    DeviceDeploymentFactory(device=device, rollout=rollout, state=DeploymentState.VERIFIED)

    response = viewer.get("/api/devices")

    row = response.json()["results"][0]
    assert (row["deployment_state"], row["deployment_rollout_id"]) == ("verified", rollout.rollout_id)


# --- detail ------------------------------------------------------------------------------------


def test_it_shows_a_device_with_versions_cohorts_and_deployment(viewer, device, rollout):
    device.base_image_version, device.agent_version = "img-7", "agent-1.2"
    device.save()
    CohortFactory(name="canary").devices.add(device)
    DeviceDeploymentFactory(
        device=device,
        rollout=rollout,
        state=DeploymentState.FAILED,
        last_error="disk full",
        diagnostics="log",
    )

    response = viewer.get(f"/api/devices/{device.device_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["versions"] == {"app": "v2.0", "base_image": "img-7", "agent": "agent-1.2"}
    assert body["version"] == "v2.0"
    assert body["status"] == "online"
    assert body["last_heartbeat"]
    assert body["cohorts"] == ["canary"]
    assert body["deployment"]["rollout_id"] == rollout.rollout_id
    assert body["deployment"]["state"] == "failed"
    assert body["deployment"]["last_error"] == "disk full"
    assert body["deployment"]["diagnostics"] == "log"
    assert "token" not in body
    assert "token_hash" not in body


def test_it_finds_devices_whose_ids_have_dots_and_colons(viewer):
    DeviceFactory(device_id="site.a:tv-1")

    response = viewer.get("/api/devices/site.a:tv-1")

    assert response.status_code == 200
    assert response.json()["device_id"] == "site.a:tv-1"


def test_it_answers_an_unknown_device_with_404(viewer):
    response = viewer.get("/api/devices/nope")

    assert response.status_code == 404
    assert response.json() == {"error": "No device with id nope."}


# --- create ------------------------------------------------------------------------------------


def test_it_creates_a_device_and_shows_its_token_once(release_manager):
    response = release_manager.post(
        "/api/devices",
        {"device_id": "tv-0200", "ring": "ring_5", "variant": "kiosk-1", "site": "Lobby"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    device = Device.objects.get(device_id="tv-0200")
    assert device.token_hash == hash_token(body["token"])
    assert (device.ring, device.variant.name, device.site) == ("ring_5", "kiosk-1", "Lobby")
    assert device.status == DeviceStatus.OFFLINE
    assert client_for_token(body["token"]).get("/api/device/desired-state").status_code == 200
    assert "token" not in release_manager.get("/api/devices/tv-0200").json()


def test_it_audits_a_created_device(release_manager):
    release_manager.post("/api/devices", {"device_id": "tv-0201", "ring": "pilot"}, format="json")

    event = AuditEvent.objects.get(object_type="device")
    assert (event.action, event.actor, event.object_repr) == ("CREATE", release_manager.user, "tv-0201")
    assert event.changes["after"]["ring"] == "pilot"
    assert event.changes["before"]["ring"] is None


def test_it_assigns_a_ring_to_a_created_device_when_none_is_given(release_manager):
    response = release_manager.post("/api/devices", {"device_id": "tv-0202"}, format="json")

    # The first device of a fleet goes where 60 % of all devices go.
    assert response.json()["ring"] == "ring_100"


def test_it_refuses_a_duplicate_device_id_with_400(release_manager, device):
    response = release_manager.post("/api/devices", {"device_id": device.device_id}, format="json")

    assert response.status_code == 400
    assert "already exists" in response.json()["fields"]["device_id"][0]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "device_id"),
        ({"device_id": "bad id"}, "device_id"),
        ({"device_id": "tv-0203", "ring": "ring_7"}, "ring"),
        ({"device_id": "tv-0203", "site": ["a"]}, "site"),
        ({"device_id": "tv-0203", "token_hash": "x"}, "token_hash"),
    ],
)
def test_it_refuses_bad_device_input_with_400(release_manager, payload, field):
    response = release_manager.post("/api/devices", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not Device.objects.exists()


# --- update ------------------------------------------------------------------------------------


def test_it_updates_a_device_and_audits_before_and_after(release_manager, device):
    response = release_manager.patch(
        f"/api/devices/{device.device_id}",
        {"site": "Ward 9", "ring": "ring_25", "variant": "tv-65-gen1", "region": device.region},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["site"], response.json()["ring"]) == ("Ward 9", "ring_25")
    device.refresh_from_db()
    assert (device.site, device.ring, device.variant.name) == ("Ward 9", "ring_25", "tv-65-gen1")
    event = AuditEvent.objects.get(object_type="device", action="UPDATE")
    assert event.actor == release_manager.user
    assert event.changes == {
        "before": {"ring": "pilot", "site": "St. Mary's", "variant": "tv-55-gen3"},
        "after": {"ring": "ring_25", "site": "Ward 9", "variant": "tv-65-gen1"},
    }


def test_it_flags_a_device_for_investigation_with_a_reason(release_manager, device):
    response = release_manager.patch(
        f"/api/devices/{device.device_id}",
        {"status": "investigate", "status_reason": "Screen flickers after update"},
        format="json",
    )

    assert response.json()["status"] == "investigate"
    event = AuditEvent.objects.get(action="UPDATE")
    assert event.reason == "Screen flickers after update"
    assert event.changes["after"] == {
        "status": "investigate",
        "status_reason": "Screen flickers after update",
    }


def test_it_records_nothing_when_an_update_changes_nothing(release_manager, device):
    response = release_manager.patch(f"/api/devices/{device.device_id}", {"site": device.site}, format="json")

    assert response.status_code == 200
    assert not AuditEvent.objects.exists()


def test_it_can_clear_a_device_variant(release_manager, device):
    release_manager.patch(f"/api/devices/{device.device_id}", {"variant": None}, format="json")

    device.refresh_from_db()
    assert device.variant is None


@pytest.mark.parametrize(
    ("payload", "status_code", "where"),
    [
        ({}, 400, "error"),
        ({"ring": "ring_7"}, 400, "ring"),
        ({"status": "asleep"}, 400, "status"),
        ({"app_version": "v9"}, 400, "app_version"),
        ({"device_id": "other"}, 400, "device_id"),
        ({"site": {"a": 1}}, 400, "site"),
    ],
)
def test_it_refuses_bad_updates_with_400(release_manager, device, payload, status_code, where):
    response = release_manager.patch(f"/api/devices/{device.device_id}", payload, format="json")

    assert response.status_code == status_code
    body = response.json()
    assert body["error"]
    if where != "error":
        assert where in body["fields"]
    assert not AuditEvent.objects.exists()


def test_it_does_not_allow_put_on_a_device(release_manager, device):
    response = release_manager.put(f"/api/devices/{device.device_id}", {"site": "x"}, format="json")

    assert response.status_code == 405


# --- credentials --------------------------------------------------------------------------------


def test_it_rotates_a_credential_and_the_old_token_stops_working(operator, device, device_client):
    old_client = device_client(device)
    assert old_client.get("/api/device/desired-state").status_code == 200

    response = operator.post(f"/api/devices/{device.device_id}/rotate-credential")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"device_id", "token"}
    assert old_client.get("/api/device/desired-state").status_code == 401
    assert client_for_token(body["token"]).get("/api/device/desired-state").status_code == 200
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.object_repr) == (
        "ROTATE_CREDENTIAL",
        operator.user,
        device.device_id,
    )
    assert body["token"] not in str(event.changes) + event.reason


def test_it_revokes_a_credential(operator, device, device_client):
    response = operator.post(f"/api/devices/{device.device_id}/revoke-credential")

    assert response.status_code == 200
    assert response.json() == {"device_id": device.device_id, "has_credential": False}
    device.refresh_from_db()
    assert device.token_hash is None
    refused = device_client(device).get("/api/device/desired-state")
    assert refused.status_code == 401
    assert AuditEvent.objects.get().action == "REVOKE_CREDENTIAL"


def test_it_records_a_revocation_once(operator, device):
    operator.post(f"/api/devices/{device.device_id}/revoke-credential")
    response = operator.post(f"/api/devices/{device.device_id}/revoke-credential")

    assert response.status_code == 200
    assert AuditEvent.objects.count() == 1


def test_it_restores_a_revoked_device_by_rotation(operator, device):
    operator.post(f"/api/devices/{device.device_id}/revoke-credential")

    token = operator.post(f"/api/devices/{device.device_id}/rotate-credential").json()["token"]

    assert client_for_token(token).get("/api/device/desired-state").status_code == 200
    assert client_for_token(device_token(device)).get("/api/device/desired-state").status_code == 401
