"""The device services called directly, as the admin and management commands call them."""

import datetime as dt
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone

from devices import services
from devices.choices import DeviceStatus
from devices.models import Device
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AuditEvent
from tests.devices.conftest import FLEET_KEY
from tests.factories import DeviceFactory, UserFactory


@pytest.mark.django_db
def test_it_gives_ties_to_the_earlier_ring(settings):
    settings.SAFEROLL_RING_SHARES = {"a": 50, "b": 50}

    assert services.next_ring_assignment() == "a"
    DeviceFactory(ring="a")
    assert services.next_ring_assignment() == "b"


@pytest.mark.django_db
def test_it_ignores_devices_outside_the_fleets_rings_when_assigning(settings):
    DeviceFactory.create_batch(5, ring="lab")

    assert services.next_ring_assignment() == "ring_100"


@pytest.mark.django_db(transaction=True)
def test_it_assigns_rings_exactly_even_when_devices_enroll_concurrently():
    def enroll_batch(worker: int) -> None:
        try:
            for n in range(25):
                services.device_enroll(device_id=f"w{worker}-{n}", enrollment_key=FLEET_KEY)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(enroll_batch, range(8)))

    assert Counter(Device.objects.values_list("ring", flat=True)) == {
        "pilot": 20,
        "ring_5": 10,
        "ring_25": 50,
        "ring_100": 120,
    }


@pytest.mark.django_db
def test_it_compares_the_enrollment_key_as_bytes():
    with pytest.raises(PermissionDenied):
        services.device_enroll(device_id="tv-1", enrollment_key="clé")


@pytest.mark.django_db
def test_it_refuses_a_variant_name_that_is_too_long():
    with pytest.raises(ServiceRefused) as exc:
        services.device_enroll(device_id="tv-1", enrollment_key=FLEET_KEY, variant="v" * 51)

    assert "variant" in exc.value.errors


@pytest.mark.django_db
def test_it_refuses_to_change_fields_people_do_not_manage():
    device = DeviceFactory()

    with pytest.raises(ServiceRefused) as exc:
        services.device_update(device=device, actor=UserFactory(), data={"token_hash": "x"})

    assert "token_hash" in exc.value.errors


@pytest.mark.django_db
def test_it_refreshes_a_stale_heartbeat_but_spares_a_fresh_one(settings, django_assert_num_queries):
    settings.SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS = 15
    now = timezone.now()
    stale = DeviceFactory(last_heartbeat=now - dt.timedelta(seconds=60))
    fresh = DeviceFactory(last_heartbeat=now - dt.timedelta(seconds=5))

    services.device_touch_heartbeat(device=stale, now=now)
    with django_assert_num_queries(0):
        services.device_touch_heartbeat(device=fresh, now=now)

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.last_heartbeat == now
    assert fresh.last_heartbeat == now - dt.timedelta(seconds=5)


@pytest.mark.django_db
def test_it_does_not_turn_a_heartbeat_back():
    now = timezone.now()
    device = DeviceFactory(last_heartbeat=now - dt.timedelta(minutes=5))
    Device.objects.filter(pk=device.pk).update(last_heartbeat=now)

    # `device` still holds the old value; the conditional update sees the newer one in the row.
    services.device_touch_heartbeat(device=device, now=now - dt.timedelta(seconds=1))

    device.refresh_from_db()
    assert device.last_heartbeat == now


@pytest.mark.django_db
def test_it_audits_rotation_without_the_token():
    device = DeviceFactory()
    user = UserFactory()

    token = services.device_rotate_credential(device=device, actor=user)

    event = AuditEvent.objects.get()
    assert token not in f"{event.reason}{event.changes}"
    assert device.status == DeviceStatus.ONLINE
