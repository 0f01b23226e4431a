"""`manage.py seed_demo`: the demo world, created once and safe to run again."""

import hashlib
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db.models import Count
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from devices.models import Device, HardwareVariant, hash_token
from devices.services import device_enroll
from rollouts.models import Release, RolloutPlan
from saferoll.core import roles
from saferoll.core.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def demo_rings(settings):
    settings.SAFEROLL_RING_SHARES = {"pilot": 10, "ring_5": 5, "ring_25": 25, "ring_100": 60}


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def ring_counts() -> dict[str, int]:
    rows = Device.objects.order_by().values("ring").annotate(n=Count("id")).values_list("ring", "n")
    return dict(rows)


def test_it_seeds_a_fleet_of_1000_devices_in_the_demo_rings():
    seed()

    assert Device.objects.count() == 1000
    assert ring_counts() == {"pilot": 100, "ring_5": 50, "ring_25": 250, "ring_100": 600}
    assert set(Device.objects.values_list("app_version", flat=True)) == {"v2.0"}
    assert Device.objects.filter(device_id="tv-0001").exists()
    assert Device.objects.filter(device_id="tv-1000").exists()
    assert Device.objects.values("site").distinct().count() > 1
    assert Device.objects.values("region").distinct().count() > 1
    assert Device.objects.values("variant").distinct().count() == HardwareVariant.objects.count() > 1
    assert not Device.objects.filter(token_hash=None).exists()


def test_it_lets_seeded_devices_enroll_with_the_fleet_key(settings):
    seed()
    before = Device.objects.get(device_id="tv-0001")

    device, token = device_enroll(device_id="tv-0001", enrollment_key=settings.SAFEROLL_ENROLLMENT_KEY)

    assert device.pk == before.pk
    assert device.ring == before.ring == "pilot"
    assert device.token_hash == hash_token(token) != before.token_hash


def test_it_seeds_the_releases_with_real_artifacts():
    seed()

    releases = {release.version: release for release in Release.objects.all()}
    assert set(releases) == {"v2.0", "v2.1", "v2.1_buggy", "v2.2"}
    assert releases["v2.0"].is_stable
    for version in ("v2.1", "v2.1_buggy", "v2.2"):
        assert releases[version].previous_release == releases["v2.0"]
        assert not releases[version].is_stable
    for release in releases.values():
        content = release.artifact.read()
        assert len(content) == release.size_bytes == 64 * 1024
        assert hashlib.sha256(content).hexdigest() == release.sha256


def test_it_seeds_the_plan_presets_and_one_user_per_role():
    output = seed()

    assert set(RolloutPlan.objects.values_list("name", flat=True)) >= {"demo", "production", "staging"}
    users = {user.username: user for user in get_user_model().objects.all()}
    for username, role in (
        ("viewer", roles.VIEWER),
        ("operator", roles.OPERATOR),
        ("release", roles.RELEASE_MANAGER),
        ("admin", roles.ADMIN),
    ):
        assert list(users[username].groups.values_list("name", flat=True)) == [roles.GROUP_NAMES[role]]
        password = re.search(rf"  {username}\s+\S+\s+password: (\S+)", output).group(1)
        assert users[username].check_password(password)
    # One token per login, plus the fleet gateway's (a service account that may only report health).
    assert output.count("API token:") == 5
    gateway = users["fleet-gateway"]
    assert not gateway.has_usable_password() and not gateway.groups.exists()
    assert gateway.has_perm("telemetry.ingest_health") and not gateway.has_perm("rollouts.view_rollout")
    assert "http://127.0.0.1:8000/" in output


def test_it_is_idempotent_and_keeps_passwords_unless_asked():
    first = seed()
    admin_password = re.search(r"  admin\s+\S+\s+password: (\S+)", first).group(1)
    Device.objects.filter(device_id="tv-0001").update(ring="ring_100")

    second = seed()

    assert Device.objects.count() == 1000
    assert Release.objects.count() == 4
    assert get_user_model().objects.count() == 5  # four logins and the fleet gateway
    assert Device.objects.get(device_id="tv-0001").ring == "ring_100"
    assert "(unchanged" in second
    assert get_user_model().objects.get(username="admin").check_password(admin_password)

    third = seed("--reset-passwords")

    new_password = re.search(r"  admin\s+\S+\s+password: (\S+)", third).group(1)
    assert new_password != admin_password
    assert get_user_model().objects.get(username="admin").check_password(new_password)


def gateway_token(output: str) -> str:
    return re.search(r"fleet-gateway .*\n\s+API token: (\S+)", output).group(1)


def test_it_creates_a_gateway_service_account_that_may_only_report_health():
    output = seed()

    gateway = get_user_model().objects.get(username="fleet-gateway")
    assert not gateway.is_staff and not gateway.is_superuser and gateway.is_active
    assert not gateway.has_usable_password()
    assert list(gateway.groups.all()) == []
    assert gateway.get_all_permissions() == {"telemetry.ingest_health"}
    assert Token.objects.get(user=gateway).key == gateway_token(output)
    created = AuditEvent.objects.get(action="SET_PERMISSIONS", object_id=str(gateway.pk))
    assert created.changes["after"]["permissions"] == ["telemetry.ingest_health"]


def test_it_lets_the_gateway_report_for_the_fleet_and_nothing_else():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {gateway_token(seed())}")
    checks = [
        {
            "device_id": device_id,
            "ring": "pilot",
            "boot_ok": True,
            "crash_free": 0.99,
            "checkin_latency_ms": 40,
        }
        for device_id in ("tv-0001", "tv-0500")
    ]

    reported = client.post("/api/health/batch", {"checks": checks}, format="json")

    assert reported.status_code == 200 and reported.json()["accepted"] == 2
    assert client.get("/api/rollouts").status_code == 403
    assert client.post("/api/releases", {"version": "v9"}, format="json").status_code == 403


def test_it_keeps_the_gateways_token_and_takes_back_what_it_was_given_since():
    token = gateway_token(seed())
    gateway = get_user_model().objects.get(username="fleet-gateway")
    gateway.is_staff = True
    gateway.set_password("guessable-password-1")
    gateway.save()
    gateway.groups.add(Group.objects.get(name=roles.GROUP_NAMES[roles.ADMIN]))

    output = seed()

    gateway.refresh_from_db()
    assert gateway_token(output) == token
    assert not gateway.is_staff and not gateway.has_usable_password()
    assert list(gateway.groups.all()) == []
    assert gateway.get_all_permissions() == {"telemetry.ingest_health"}
    audit = AuditEvent.objects.filter(action="SET_PERMISSIONS", object_id=str(gateway.pk))
    assert audit.count() == 2
    seed()
    assert audit.count() == 2
