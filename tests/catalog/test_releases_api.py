"""The releases API: the catalogue that rollouts deploy from, and the artifact download for devices."""

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from devices.models import HardwareVariant
from rollouts.models import Release
from saferoll.core import roles
from saferoll.core.models import AuditEvent
from tests.factories import DeviceFactory, HardwareVariantFactory, ReleaseFactory, device_token

pytestmark = pytest.mark.django_db

SHA = "ab" * 32


def release_events(version: str, action: str):
    return AuditEvent.objects.filter(object_type="release", object_repr=version, action=action)


def device_client(device) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Device {device_token(device)}")
    return client


# --- create --------------------------------------------------------------------------------------


def test_it_creates_a_release_with_its_variants_and_previous_release(release_manager):
    ReleaseFactory(version="v2.0", is_stable=True)
    HardwareVariantFactory(name="tv-55-gen3")

    response = release_manager.post(
        "/api/releases",
        {
            "version": "v2.1",
            "artifact_url": "https://updates.example.com/v2.1.img",
            "size_bytes": 1024,
            "sha256": SHA.upper(),
            "signature": "sig",
            "compatible_variants": ["tv-55-gen3", "tv-43-gen4"],
            "notes": "Faster guide.",
            "previous_release": "v2.0",
        },
        format="json",
    )

    assert response.status_code == 201, response.data
    body = response.json()
    assert body["version"] == "v2.1"
    assert body["sha256"] == SHA
    assert sorted(body["compatible_variants"]) == ["tv-43-gen4", "tv-55-gen3"]
    assert body["previous_release"] == "v2.0"
    assert body["created_by"] == release_manager.user.username
    assert body["download_url"] == "https://updates.example.com/v2.1.img"
    assert HardwareVariant.objects.filter(name="tv-43-gen4").exists()
    event = release_events("v2.1", "CREATE").get()
    assert event.actor_name == release_manager.user.username
    assert event.changes["after"]["previous_release"] == "v2.0"
    assert event.changes["after"]["compatible_variants"] == ["tv-43-gen4", "tv-55-gen3"]


def test_it_refuses_a_duplicate_version_with_a_sentence(release_manager):
    ReleaseFactory(version="v2.1")

    response = release_manager.post("/api/releases", {"version": "v2.1"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "A release with version v2.1 already exists."
    assert response.json()["fields"] == {"version": ["A release with version v2.1 already exists."]}
    assert Release.objects.filter(version="v2.1").count() == 1
    assert not release_events("v2.1", "CREATE").exists()


@pytest.mark.parametrize("sha", ["abc", "g" * 64, "a" * 65])
def test_it_refuses_a_sha256_that_is_not_64_hex_characters(release_manager, sha):
    response = release_manager.post("/api/releases", {"version": "v9", "sha256": sha}, format="json")

    assert response.status_code == 400
    assert "sha256" in response.json()["fields"]
    assert not Release.objects.filter(version="v9").exists()


def test_it_refuses_an_unknown_previous_release(release_manager):
    response = release_manager.post(
        "/api/releases", {"version": "v2.1", "previous_release": "v1.9"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["fields"]["previous_release"] == ["There is no release v1.9 to roll back to."]


def test_it_refuses_a_previous_release_named_with_a_nul_character(release_manager):
    response = release_manager.post(
        "/api/releases", {"version": "v2.1", "previous_release": "v1\x00"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["fields"]["previous_release"] == ["There is no release v1\\x00 to roll back to."]


def test_it_refuses_a_size_too_large_for_the_database(release_manager):
    response = release_manager.post("/api/releases", {"version": "v9", "size_bytes": 2**63}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"]["size_bytes"] == [
        "Ensure this value is less than or equal to 9223372036854775807."
    ]


def test_it_answers_malformed_json_with_400(release_manager):
    response = release_manager.post(
        "/api/releases", data='{"version": "v2.1",', content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"].startswith("Malformed request body")


def test_it_requires_a_version(release_manager):
    response = release_manager.post("/api/releases", {}, format="json")

    assert response.status_code == 400
    assert "version" in response.json()["fields"]


def test_it_computes_size_and_sha256_of_an_uploaded_artifact(release_manager):
    content = bytes(range(256)) * 1000

    response = release_manager.post(
        "/api/releases",
        {
            "version": "v3.0",
            "artifact": SimpleUploadedFile("firmware.img", content),
            "compatible_variants": ["tv-55-gen3"],
            "is_stable": "true",
        },
        format="multipart",
    )

    assert response.status_code == 201, response.data
    body = response.json()
    assert body["size_bytes"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["has_artifact"] is True
    assert body["is_stable"] is True
    assert body["compatible_variants"] == ["tv-55-gen3"]
    assert body["download_url"] == "http://testserver/api/releases/v3.0/artifact"
    release = Release.objects.get(version="v3.0")
    assert release.artifact.read() == content
    assert (
        release_events("v3.0", "CREATE").get().changes["after"]["sha256"]
        == hashlib.sha256(content).hexdigest()
    )


def test_it_refuses_an_upload_whose_bytes_do_not_match_the_sha256_given(release_manager):
    response = release_manager.post(
        "/api/releases",
        {"version": "v3.0", "artifact": SimpleUploadedFile("a.img", b"payload"), "sha256": SHA},
        format="multipart",
    )

    assert response.status_code == 400
    assert "SHA-256" in response.json()["error"]
    assert not Release.objects.filter(version="v3.0").exists()


# --- read ------------------------------------------------------------------------------------------


def test_it_lists_releases_paginated_and_filtered(viewer):
    ReleaseFactory(version="v2.0", is_stable=True)
    ReleaseFactory(version="v2.1")
    ReleaseFactory(version="v2.2")

    everything = viewer.get("/api/releases").json()
    stable = viewer.get("/api/releases", {"is_stable": "true"}).json()
    one = viewer.get("/api/releases", {"version": "v2.1"}).json()
    page = viewer.get("/api/releases", {"page_size": 2}).json()

    assert everything["count"] == 3
    assert [item["version"] for item in stable["results"]] == ["v2.0"]
    assert [item["version"] for item in one["results"]] == ["v2.1"]
    assert len(page["results"]) == 2
    assert page["next"] is not None


def test_it_gets_a_release_by_a_version_with_dots_and_underscores(viewer):
    ReleaseFactory(version="v2.1_buggy")

    response = viewer.get("/api/releases/v2.1_buggy")

    assert response.status_code == 200
    assert response.json()["version"] == "v2.1_buggy"


def test_it_answers_404_for_an_unknown_release(viewer):
    response = viewer.get("/api/releases/v0.0")

    assert response.status_code == 404
    assert response.json()["error"]


def test_it_refuses_people_without_a_role_and_anonymous_clients(api, db):
    from tests.conftest import client_for
    from tests.factories import UserFactory

    assert api.get("/api/releases").status_code == 401
    assert client_for(UserFactory(username="nobody")).get("/api/releases").status_code == 403


# --- update ----------------------------------------------------------------------------------------


def test_it_patches_a_release_and_audits_before_and_after(release_manager):
    ReleaseFactory(version="v2.0", is_stable=True)
    ReleaseFactory(version="v2.1", notes="old", is_stable=False)

    response = release_manager.patch(
        "/api/releases/v2.1",
        {"notes": "new", "is_stable": True, "previous_release": "v2.0", "compatible_variants": ["tv-x"]},
        format="json",
    )

    assert response.status_code == 200, response.data
    assert response.json()["notes"] == "new"
    assert response.json()["compatible_variants"] == ["tv-x"]
    event = release_events("v2.1", "UPDATE").get()
    assert event.changes["before"] == {
        "compatible_variants": [],
        "is_stable": False,
        "notes": "old",
        "previous_release": None,
    }
    assert event.changes["after"] == {
        "compatible_variants": ["tv-x"],
        "is_stable": True,
        "notes": "new",
        "previous_release": "v2.0",
    }


def test_it_keeps_the_version_immutable(release_manager):
    ReleaseFactory(version="v2.1")

    renamed = release_manager.patch("/api/releases/v2.1", {"version": "v2.2"}, format="json")
    same = release_manager.patch("/api/releases/v2.1", {"version": "v2.1", "notes": "x"}, format="json")

    assert renamed.status_code == 400
    assert renamed.json()["error"] == "The version of a release cannot be changed (it is v2.1)."
    assert same.status_code == 200
    assert Release.objects.filter(version="v2.1").exists()
    assert not Release.objects.filter(version="v2.2").exists()


def test_it_refuses_a_release_that_rolls_back_to_itself(release_manager):
    ReleaseFactory(version="v2.1")

    response = release_manager.patch("/api/releases/v2.1", {"previous_release": "v2.1"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "A release cannot roll back to itself."


def test_it_records_nothing_for_a_patch_that_changes_nothing(release_manager):
    ReleaseFactory(version="v2.1", notes="same")

    response = release_manager.patch("/api/releases/v2.1", {"notes": "same"}, format="json")

    assert response.status_code == 200
    assert not release_events("v2.1", "UPDATE").exists()


def test_it_replaces_the_artifact_with_a_new_upload(release_manager):
    ReleaseFactory(version="v2.1", size_bytes=1, sha256=SHA)

    response = release_manager.patch(
        "/api/releases/v2.1", {"artifact": SimpleUploadedFile("new.img", b"new bytes")}, format="multipart"
    )

    assert response.status_code == 200, response.data
    assert response.json()["size_bytes"] == len(b"new bytes")
    assert response.json()["sha256"] == hashlib.sha256(b"new bytes").hexdigest()
    assert release_events("v2.1", "UPDATE").get().changes["before"]["sha256"] == SHA


def test_it_has_no_delete(admin_client):
    ReleaseFactory(version="v2.1")

    assert admin_client.delete("/api/releases/v2.1").status_code == 405
    assert Release.objects.filter(version="v2.1").exists()


# --- artifact download -----------------------------------------------------------------------------


@pytest.fixture
def uploaded(release_manager):
    content = b"\x7fELF" + b"\x00" * 5000
    release_manager.post(
        "/api/releases",
        {"version": "v4.0", "artifact": SimpleUploadedFile("fw.img", content)},
        format="multipart",
    )
    return content


def test_it_streams_the_artifact_to_a_device(uploaded):
    device = DeviceFactory(device_id="tv-0001")

    response = device_client(device).get("/api/releases/v4.0/artifact")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == uploaded
    assert response["Content-Length"] == str(len(uploaded))
    assert response["X-Checksum-SHA256"] == hashlib.sha256(uploaded).hexdigest()
    assert "attachment" in response["Content-Disposition"]


def test_it_streams_the_artifact_to_people_who_read_releases(uploaded, viewer):
    response = viewer.get("/api/releases/v4.0/artifact")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == uploaded


def test_it_refuses_the_artifact_to_a_bad_device_token_and_to_anonymous_clients(uploaded, api):
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Device not-a-token")

    assert bad.get("/api/releases/v4.0/artifact").status_code == 401
    assert api.get("/api/releases/v4.0/artifact").status_code == 401


def test_it_answers_404_with_a_sentence_when_a_release_has_no_uploaded_file(viewer):
    ReleaseFactory(version="v2.1", artifact_url="https://updates.example.com/v2.1.img")

    response = viewer.get("/api/releases/v2.1/artifact")

    assert response.status_code == 404
    assert response.json()["error"] == (
        "Release v2.1 has no uploaded artifact file. "
        "Its artifact is published at https://updates.example.com/v2.1.img."
    )


def test_it_does_not_let_a_device_use_the_catalogue_api(db):
    device = DeviceFactory(device_id="tv-0002")

    assert device_client(device).get("/api/releases").status_code in (401, 403)


# --- who may write ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (roles.VIEWER, False),
        (roles.OPERATOR, False),
        (roles.RELEASE_MANAGER, True),
        (roles.ADMIN, True),
    ],
)
def test_it_lets_only_release_managers_and_admins_create_and_change_releases(persona, role, allowed):
    client = persona(role)
    ReleaseFactory(version="v2.1")

    created = client.post("/api/releases", {"version": "v5.0"}, format="json")
    changed = client.patch("/api/releases/v2.1", {"notes": "changed"}, format="json")
    missing = client.patch("/api/releases/v0.0", {"notes": "changed"}, format="json")

    assert created.status_code == (201 if allowed else 403)
    assert changed.status_code == (200 if allowed else 403)
    assert missing.status_code == (404 if allowed else 403)
    assert Release.objects.filter(version="v5.0").exists() is allowed
    assert release_events("v2.1", "UPDATE").exists() is allowed
