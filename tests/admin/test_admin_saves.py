"""Saves in the admin go through the services: the same rules, and one audit event per write."""

import hashlib

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from devices.models import Cohort, CohortMembership, Device, HardwareVariant, hash_token
from rollouts.models import Incident, Release, RolloutPlan
from saferoll.core.models import AuditEvent
from tests.factories import (
    DEMO_STAGES,
    CohortFactory,
    DeviceFactory,
    IncidentFactory,
    ReleaseFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(db) -> Client:
    client = Client()
    client.user = UserFactory(username="rm", role="release_manager")
    client.force_login(client.user)
    return client


def texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def events(object_type: str, action: str):
    return AuditEvent.objects.filter(object_type=object_type, action=action)


def membership_management(total: int, initial: int) -> dict:
    return {
        "memberships-TOTAL_FORMS": str(total),
        "memberships-INITIAL_FORMS": str(initial),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }


# --- releases ------------------------------------------------------------------------------------


def test_it_creates_a_release_from_an_upload_through_the_service(manager, settings):
    content = b"firmware" * 1000
    stable = ReleaseFactory(version="v2.0", is_stable=True)
    variant = HardwareVariant.objects.create(name="tv-55-gen3")

    response = manager.post(
        reverse("admin:rollouts_release_add"),
        {
            "version": "v2.1",
            "previous_release": stable.pk,
            "notes": "Guide",
            "artifact": SimpleUploadedFile("fw.img", content),
            "artifact_url": "",
            "size_bytes": "1",
            "sha256": "",
            "signature": "",
            "compatible_variants": [variant.pk],
            "_save": "Save",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    release = Release.objects.get(version="v2.1")
    assert release.size_bytes == len(content)
    assert release.sha256 == hashlib.sha256(content).hexdigest()
    assert release.created_by == manager.user
    assert list(release.compatible_variants.values_list("name", flat=True)) == ["tv-55-gen3"]
    event = events("release", "CREATE").get()
    assert event.actor_name == "rm"
    assert event.changes["after"]["compatible_variants"] == ["tv-55-gen3"]


def test_it_changes_a_release_with_one_audited_before_and_after(manager):
    release = ReleaseFactory(version="v2.1", notes="old")

    response = manager.post(
        reverse("admin:rollouts_release_change", args=[release.pk]),
        {
            "notes": "new",
            "artifact_url": release.artifact_url,
            "size_bytes": release.size_bytes,
            "sha256": release.sha256,
            "signature": "",
            "is_stable": "on",
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    release.refresh_from_db()
    assert (release.notes, release.is_stable, release.version) == ("new", True, "v2.1")
    event = events("release", "UPDATE").get()
    assert event.changes == {
        "before": {"is_stable": False, "notes": "old"},
        "after": {"is_stable": True, "notes": "new"},
    }


def test_it_refuses_a_bad_sha256_on_the_form(manager):
    response = manager.post(
        reverse("admin:rollouts_release_add"),
        {"version": "v2.9", "sha256": "xyz", "artifact_url": "", "signature": "", "_save": "Save"},
    )

    assert response.status_code == 200
    assert "sha256" in response.context["adminform"].form.errors
    assert not Release.objects.filter(version="v2.9").exists()


# --- devices -------------------------------------------------------------------------------------


def test_it_creates_a_device_and_shows_its_token_once(manager):
    response = manager.post(
        reverse("admin:devices_device_add"),
        {
            "device_id": "tv-0777",
            "site": "Ward 7",
            "region": "eu-west",
            "ring": "ring_5",
            "app_version": "v2.0",
            "base_image_version": "",
            "agent_version": "",
            "_save": "Save",
        },
        follow=True,
    )

    device = Device.objects.get(device_id="tv-0777")
    token_messages = [text for text in texts(response) if text.startswith("Token of tv-0777: ")]
    assert len(token_messages) == 1
    token = token_messages[0].split(": ")[1].split(" ")[0]
    assert device.token_hash == hash_token(token)
    assert device.ring == "ring_5"
    assert events("device", "CREATE").get().actor_name == "rm"


def test_it_changes_a_device_through_device_update(manager):
    device = DeviceFactory(device_id="tv-0001", site="Old", ring="pilot")

    response = manager.post(
        reverse("admin:devices_device_change", args=[device.pk]),
        {
            "variant": device.variant_id,
            "site": "New",
            "region": device.region,
            "ring": "pilot",
            "status": device.status,
            "status_reason": "",
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    device.refresh_from_db()
    assert device.site == "New"
    event = events("device", "UPDATE").get()
    assert event.changes == {"before": {"site": "Old"}, "after": {"site": "New"}}


def test_it_rotates_and_revokes_credentials_with_admin_actions(manager):
    device = DeviceFactory(device_id="tv-0001")
    changelist = reverse("admin:devices_device_changelist")

    rotated = manager.post(
        changelist, {"action": "rotate_credential", "_selected_action": [device.pk], "index": 0}, follow=True
    )
    device.refresh_from_db()
    token = (
        next(text for text in texts(rotated) if text.startswith("Token of tv-0001: "))
        .split(": ")[1]
        .split()[0]
    )
    assert device.token_hash == hash_token(token)
    assert events("device", "ROTATE_CREDENTIAL").count() == 1

    manager.post(changelist, {"action": "revoke_credential", "_selected_action": [device.pk], "index": 0})
    device.refresh_from_db()
    assert device.token_hash is None
    assert events("device", "REVOKE_CREDENTIAL").count() == 1


def test_it_does_not_offer_credential_actions_to_a_viewer(db):
    device = DeviceFactory(device_id="tv-0001")
    viewer = Client()
    viewer.force_login(UserFactory(username="v", role="viewer"))

    viewer.post(
        reverse("admin:devices_device_changelist"),
        {"action": "rotate_credential", "_selected_action": [device.pk], "index": 0},
    )

    assert Device.objects.get(pk=device.pk).token_hash == device.token_hash
    assert not events("device", "ROTATE_CREDENTIAL").exists()


# --- cohorts -------------------------------------------------------------------------------------


def test_it_creates_a_cohort_with_members_as_one_audited_write(manager):
    first = DeviceFactory(device_id="tv-0001")
    second = DeviceFactory(device_id="tv-0002")

    response = manager.post(
        reverse("admin:devices_cohort_add"),
        {
            "name": "canary",
            "kind": "canary",
            "description": "",
            **membership_management(total=2, initial=0),
            "memberships-0-device": first.pk,
            "memberships-1-device": second.pk,
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    cohort = Cohort.objects.get(name="canary")
    assert set(cohort.devices.values_list("device_id", flat=True)) == {"tv-0001", "tv-0002"}
    event = events("cohort", "CREATE").get()
    assert event.changes["added"] == ["tv-0001", "tv-0002"]
    assert CohortMembership.objects.get(device=first).added_by == manager.user


def test_it_changes_cohort_membership_through_the_service(manager):
    cohort = CohortFactory(name="pilot-wards", kind="pilot")
    staying = DeviceFactory(device_id="tv-0001")
    leaving = DeviceFactory(device_id="tv-0002")
    joining = DeviceFactory(device_id="tv-0003")
    kept = CohortMembership.objects.create(cohort=cohort, device=staying)
    gone = CohortMembership.objects.create(cohort=cohort, device=leaving)

    response = manager.post(
        reverse("admin:devices_cohort_change", args=[cohort.pk]),
        {
            "kind": "pilot",
            "description": "",
            **membership_management(total=3, initial=2),
            "memberships-0-id": kept.pk,
            "memberships-0-cohort": cohort.pk,
            "memberships-0-device": staying.pk,
            "memberships-1-id": gone.pk,
            "memberships-1-cohort": cohort.pk,
            "memberships-1-device": leaving.pk,
            "memberships-1-DELETE": "on",
            "memberships-2-cohort": cohort.pk,
            "memberships-2-device": joining.pk,
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    assert set(cohort.devices.values_list("device_id", flat=True)) == {"tv-0001", "tv-0003"}
    event = events("cohort", "CHANGE_MEMBERS").get()
    assert event.changes == {"added": ["tv-0003"], "removed": ["tv-0002"]}
    assert event.actor_name == "rm"


# --- plans, variants, incidents ------------------------------------------------------------------


def test_it_creates_and_changes_a_plan_through_the_plan_services(manager):
    import json

    added = manager.post(
        reverse("admin:rollouts_rolloutplan_add"),
        {
            "name": "careful",
            "description": "",
            "stages": json.dumps(DEMO_STAGES),
            "gate_config": json.dumps({"min_sample": 20}),
            "_save": "Save",
        },
    )
    plan = RolloutPlan.objects.get(name="careful")
    changed = manager.post(
        reverse("admin:rollouts_rolloutplan_change", args=[plan.pk]),
        {
            "description": "Slow",
            "stages": json.dumps(DEMO_STAGES),
            "gate_config": json.dumps({"min_sample": 30}),
            "_save": "Save",
        },
    )

    assert (added.status_code, changed.status_code) == (302, 302)
    plan.refresh_from_db()
    assert plan.gate_config == {"min_sample": 30}
    assert events("rolloutplan", "CREATE").count() == 1
    update = events("rolloutplan", "UPDATE").get()
    assert update.changes["before"]["gate_config"] == {"min_sample": 20}


def test_it_shows_plan_errors_on_the_form(manager):
    response = manager.post(
        reverse("admin:rollouts_rolloutplan_add"),
        {"name": "broken", "stages": "[]", "gate_config": '{"nonsense": 1}', "_save": "Save"},
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "stages" in errors
    assert "gate_config" in errors
    assert not RolloutPlan.objects.filter(name="broken").exists()


def test_it_audits_hardware_variant_saves(manager):
    manager.post(
        reverse("admin:devices_hardwarevariant_add"), {"name": "kiosk-2", "description": "", "_save": "Save"}
    )
    variant = HardwareVariant.objects.get(name="kiosk-2")
    manager.post(
        reverse("admin:devices_hardwarevariant_change", args=[variant.pk]),
        {"name": "kiosk-2", "description": "Lobby kiosk", "_save": "Save"},
    )

    assert events("hardwarevariant", "CREATE").count() == 1
    assert events("hardwarevariant", "UPDATE").get().changes == {
        "before": {"description": ""},
        "after": {"description": "Lobby kiosk"},
    }


def test_it_opens_changes_and_resolves_incidents_through_the_services(manager):
    manager.post(
        reverse("admin:rollouts_incident_add"),
        {"severity": "sev2", "title": "Guide freezes", "description": "", "_save": "Save"},
    )
    incident = Incident.objects.get(title="Guide freezes")
    manager.post(
        reverse("admin:rollouts_incident_change", args=[incident.pk]),
        {"severity": "sev1", "title": "Guide freezes", "description": "", "_save": "Save"},
    )
    manager.post(
        reverse("admin:rollouts_incident_changelist"),
        {"action": "resolve", "_selected_action": [incident.pk], "index": 0},
    )

    incident.refresh_from_db()
    assert (incident.severity, incident.status, incident.opened_by) == ("sev1", "resolved", manager.user)
    assert events("incident", "OPEN").count() == 1
    assert events("incident", "UPDATE").get().changes == {
        "before": {"severity": "sev2"},
        "after": {"severity": "sev1"},
    }
    assert events("incident", "RESOLVE").count() == 1


def test_it_does_not_let_a_viewer_resolve_incidents(db):
    incident = IncidentFactory()
    viewer = Client()
    viewer.force_login(UserFactory(username="v", role="viewer"))

    viewer.post(
        reverse("admin:rollouts_incident_changelist"),
        {"action": "resolve", "_selected_action": [incident.pk], "index": 0},
    )

    incident.refresh_from_db()
    assert incident.status == "open"
