"""Enrollment is rate limited per client address and desired-state reads per device (SPEC §14)."""

import time

import pytest

from saferoll.core.api.throttles import RateThrottle
from tests.devices.conftest import FLEET_KEY
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db

ENROLL = "/api/devices/enroll"
DESIRED_STATE = "/api/device/desired-state"


def enroll(api, device_id: str, **request):
    return api.post(ENROLL, {"device_id": device_id, "enrollment_key": FLEET_KEY}, format="json", **request)


def test_an_address_enrolling_past_its_rate_is_answered_429_and_nothing_is_enrolled(api, rate_limits):
    rate_limits(enroll="2/minute")

    answers = [enroll(api, f"tv-000{index}", REMOTE_ADDR="10.0.0.1") for index in range(3)]

    assert [answer.status_code for answer in answers] == [201, 201, 429]
    wait = int(answers[-1]["Retry-After"])
    assert answers[-1].json() == {
        "error": f"Too many requests from this client; wait {wait} seconds, then try again.",
        "retry_after": wait,
    }
    assert enroll(api, "tv-0009", REMOTE_ADDR="10.0.0.2").status_code == 201


def test_a_wrong_fleet_key_counts_too(api, rate_limits):
    rate_limits(enroll="1/minute")
    wrong = {"device_id": "tv-0001", "enrollment_key": "guess"}

    assert api.post(ENROLL, wrong, format="json").status_code == 403
    assert api.post(ENROLL, wrong, format="json").status_code == 429


def test_a_client_cannot_pass_for_another_address_by_writing_x_forwarded_for(api, rate_limits):
    rate_limits(enroll="1/minute")

    assert enroll(api, "tv-0001", HTTP_X_FORWARDED_FOR="192.0.2.1").status_code == 201
    assert enroll(api, "tv-0002", HTTP_X_FORWARDED_FOR="192.0.2.2").status_code == 429


def test_behind_a_trusted_proxy_the_address_it_saw_is_counted(api, rate_limits, settings):
    rate_limits(enroll="1/minute")
    settings.SAFEROLL_TRUSTED_PROXIES = 1
    # The proxy appends the address it saw; whatever stands before it, the client wrote.
    assert enroll(api, "tv-0001", HTTP_X_FORWARDED_FOR="192.0.2.1, 10.0.0.7").status_code == 201
    assert enroll(api, "tv-0002", HTTP_X_FORWARDED_FOR="192.0.2.2, 10.0.0.7").status_code == 429
    assert enroll(api, "tv-0003", HTTP_X_FORWARDED_FOR="10.0.0.8").status_code == 201


def test_the_addresses_of_one_ipv6_network_share_a_count(api, rate_limits):
    rate_limits(enroll="1/minute")

    assert enroll(api, "tv-0001", REMOTE_ADDR="2001:db8:1:2::1").status_code == 201
    assert enroll(api, "tv-0002", REMOTE_ADDR="2001:db8:1:2::ffff").status_code == 429
    assert enroll(api, "tv-0003", REMOTE_ADDR="2001:db8:1:3::1").status_code == 201


def test_a_device_reading_its_desired_state_past_its_rate_is_answered_429(
    rate_limits, device_client, monkeypatch
):
    rate_limits(desired_state="2/minute")
    device, other = DeviceFactory(device_id="tv-0001"), DeviceFactory(device_id="tv-0002")
    client = device_client(device)

    answers = [client.get(DESIRED_STATE) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert 1 <= int(answers[-1]["Retry-After"]) <= 60
    assert device_client(other).get(DESIRED_STATE).status_code == 200
    monkeypatch.setattr(RateThrottle, "timer", staticmethod(lambda: time.time() + 61))
    assert client.get(DESIRED_STATE).status_code == 200
