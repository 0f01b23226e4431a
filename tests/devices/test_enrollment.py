from collections import Counter

import pytest

from devices.choices import DeviceStatus
from devices.models import Device, HardwareVariant, hash_token
from saferoll.core.models import AuditEvent
from tests.devices.conftest import FLEET_KEY, client_for_token
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db

URL = "/api/devices/enroll"


def enroll(api, **payload):
    return api.post(URL, {"enrollment_key": FLEET_KEY, **payload}, format="json")


def test_it_enrolls_a_new_device_and_returns_a_working_token(api):
    response = enroll(api, device_id="tv-0100", variant="tv-55-gen4", site="St. Mary's", version="v2.0")

    assert response.status_code == 201, response.data
    body = response.json()
    assert set(body) == {"device_id", "token", "ring"}
    assert body["device_id"] == "tv-0100"
    device = Device.objects.get(device_id="tv-0100")
    assert device.token_hash == hash_token(body["token"])
    assert device.ring == body["ring"]
    assert device.status == DeviceStatus.ONLINE
    assert device.last_heartbeat is not None
    assert device.app_version == "v2.0"
    assert device.site == "St. Mary's"
    assert device.variant.name == "tv-55-gen4"
    assert HardwareVariant.objects.filter(name="tv-55-gen4").exists()
    assert client_for_token(body["token"]).get("/api/device/desired-state").status_code == 200


def test_it_audits_an_enrollment_as_the_device_itself(api):
    enroll(api, device_id="tv-0101", ring="ring_5")

    event = AuditEvent.objects.get(object_type="device", object_id=str(Device.objects.get().pk))
    assert event.action == "ENROLL"
    assert event.actor_name == "device:tv-0101"
    assert event.actor is None
    assert event.changes["after"]["ring"] == "ring_5"
    assert "token" not in str(event.changes)


def test_it_refuses_a_wrong_enrollment_key_with_403(api):
    response = api.post(URL, {"device_id": "tv-0102", "enrollment_key": "guess"}, format="json")

    assert response.status_code == 403
    assert "enrollment key" in response.json()["error"]
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"enrollment_key": FLEET_KEY}, "device_id"),
        ({"device_id": "tv-0103"}, "enrollment_key"),
        ({"device_id": "", "enrollment_key": FLEET_KEY}, "device_id"),
        ({"device_id": "tv 0103", "enrollment_key": FLEET_KEY}, "device_id"),
        ({"device_id": "tv/0103", "enrollment_key": FLEET_KEY}, "device_id"),
        ({"device_id": "x" * 51, "enrollment_key": FLEET_KEY}, "device_id"),
        ({"device_id": "enroll", "enrollment_key": FLEET_KEY}, "device_id"),
        ({"device_id": 12, "enrollment_key": FLEET_KEY, "ring": ["pilot"]}, "ring"),
        ({"device_id": "tv-0103", "enrollment_key": FLEET_KEY, "ring": "ring_50"}, "ring"),
        ({"device_id": "tv-0103", "enrollment_key": FLEET_KEY, "colour": "red"}, "colour"),
    ],
)
def test_it_answers_bad_enrollment_input_with_400_naming_the_field(api, payload, field):
    response = api.post(URL, payload, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["error"]
    assert field in body["fields"]
    assert not Device.objects.exists()


def test_it_accepts_device_ids_with_dots_colons_and_dashes(api):
    response = enroll(api, device_id="site.a:tv_01-x")

    assert response.status_code == 201


def test_it_answers_malformed_json_with_400(api):
    response = api.post(URL, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("Malformed request body")


def test_it_answers_an_empty_body_with_400(api):
    response = api.post(URL, {}, format="json")

    assert response.status_code == 400
    assert {"device_id", "enrollment_key"} <= set(response.json()["fields"])


def test_it_answers_a_list_body_with_400(api):
    response = api.post(URL, [1, 2], format="json")

    assert response.status_code == 400
    assert "dictionary" in response.json()["error"]


def test_it_keeps_a_given_ring(api):
    response = enroll(api, device_id="tv-0104", ring="ring_25")

    assert response.json()["ring"] == "ring_25"
    assert Device.objects.get(device_id="tv-0104").ring == "ring_25"


def test_it_assigns_rings_so_the_fleet_converges_on_the_shares(api):
    targets = {"pilot": 0.10, "ring_5": 0.05, "ring_25": 0.25, "ring_100": 0.60}
    for n in range(1, 201):
        enroll(api, device_id=f"tv-{n:04d}")
        counts = Counter(Device.objects.values_list("ring", flat=True))
        # Never more than one device away from the exact share, at every size of the fleet.
        for ring, share in targets.items():
            assert abs(counts[ring] - share * n) <= 1, (n, counts)

    assert Counter(Device.objects.values_list("ring", flat=True)) == {
        "pilot": 20,
        "ring_5": 10,
        "ring_25": 50,
        "ring_100": 120,
    }


def test_it_counts_existing_devices_when_assigning_a_ring(api):
    DeviceFactory.create_batch(20, ring="ring_25")
    DeviceFactory.create_batch(60, ring="ring_100")

    response = enroll(api, device_id="tv-0105")

    # Of 81 devices pilot should hold 8.1 and has none: the furthest below its share.
    assert response.json()["ring"] == "pilot"


def test_it_re_enrolls_a_known_device_with_a_new_token_and_its_server_ring(api):
    first = enroll(api, device_id="tv-0106", ring="ring_25").json()

    second = enroll(api, device_id="tv-0106", ring="pilot", version="v2.1")

    assert second.status_code == 201
    body = second.json()
    assert body["ring"] == "ring_25"
    assert body["token"] != first["token"]
    assert Device.objects.get(device_id="tv-0106").app_version == "v2.1"
    old = client_for_token(first["token"]).get("/api/device/desired-state")
    assert old.status_code == 401
    assert "revoked" in old.json()["error"]
    assert client_for_token(body["token"]).get("/api/device/desired-state").status_code == 200
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == ["ENROLL", "RE_ENROLL"]


def test_it_keeps_what_people_set_when_a_device_re_enrolls(api):
    DeviceFactory(device_id="tv-0107", site="Ward 3", region="eu-west", ring="ring_5")

    enroll(api, device_id="tv-0107", site="somewhere else", region="us-east", variant="other")

    device = Device.objects.get(device_id="tv-0107")
    assert (device.site, device.region, device.ring, device.variant.name) == (
        "Ward 3",
        "eu-west",
        "ring_5",
        "tv-55-gen3",
    )


def test_it_brings_an_offline_device_back_online_when_it_re_enrolls(api):
    DeviceFactory(device_id="tv-0108", status=DeviceStatus.OFFLINE, last_heartbeat=None)

    enroll(api, device_id="tv-0108")

    device = Device.objects.get(device_id="tv-0108")
    assert device.status == DeviceStatus.ONLINE
    assert device.last_heartbeat is not None


def test_it_refuses_to_re_enroll_a_device_whose_credential_was_revoked(api):
    DeviceFactory(device_id="tv-0109", token_hash=None)

    response = enroll(api, device_id="tv-0109")

    assert response.status_code == 403
    assert "revoked" in response.json()["error"]
    assert Device.objects.get(device_id="tv-0109").token_hash is None


def test_it_needs_no_credential_to_enroll_but_ignores_one(api, device):
    api.credentials(HTTP_AUTHORIZATION="Device not-a-real-token")

    response = enroll(api, device_id="tv-0110")

    assert response.status_code == 201
