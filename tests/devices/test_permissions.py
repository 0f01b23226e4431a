"""Who may call what: every role on every write, people versus devices, and no credential at all."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from saferoll.core import roles
from saferoll.core.models import AuditEvent
from tests.conftest import client_for
from tests.factories import CohortFactory, DeviceDeploymentFactory, UserFactory

pytestmark = pytest.mark.django_db

EVERYONE = set(roles.ROLES)
MANAGERS = {roles.RELEASE_MANAGER, roles.ADMIN}
CREDENTIAL_KEEPERS = {roles.OPERATOR, roles.RELEASE_MANAGER, roles.ADMIN}

# (method, path with {device} / {cohort} for the target, body, roles allowed, success status)
WRITES = [
    ("post", "/api/devices", {"device_id": "tv-new"}, MANAGERS, 201),
    ("patch", "/api/devices/{device}", {"site": "Ward 7"}, MANAGERS, 200),
    ("post", "/api/devices/{device}/rotate-credential", None, CREDENTIAL_KEEPERS, 200),
    ("post", "/api/devices/{device}/revoke-credential", None, CREDENTIAL_KEEPERS, 200),
    ("post", "/api/cohorts", {"name": "new-cohort"}, MANAGERS, 201),
    ("patch", "/api/cohorts/{cohort}", {"description": "changed"}, MANAGERS, 200),
    ("post", "/api/cohorts/{cohort}/members", {"add": ["tv-0001"]}, MANAGERS, 200),
]
READS = ["/api/devices", "/api/devices/{device}", "/api/cohorts", "/api/cohorts/{cohort}"]
DEVICE_ENDPOINTS = [
    ("get", "/api/device/desired-state", None),
    ("post", "/api/device/deployments/{rollout}", {"state": "downloading"}),
    ("post", "/api/device/deployments/{rollout}/diagnostics", {"diagnostics": "log"}),
]


@pytest.fixture
def targets(device):
    cohort = CohortFactory(name="canary")
    deployment = DeviceDeploymentFactory(device=device)
    return {"device": device.device_id, "cohort": cohort.name, "rollout": deployment.rollout.rollout_id}


def call(client: APIClient, method: str, path: str, body):
    return (
        getattr(client, method)(path, body, format="json")
        if body is not None
        else getattr(client, method)(path)
    )


@pytest.mark.parametrize("role", roles.ROLES)
@pytest.mark.parametrize(("method", "path", "body", "allowed", "success"), WRITES)
def test_it_lets_only_the_right_roles_write(persona, targets, role, method, path, body, allowed, success):
    response = call(persona(role), method, path.format(**targets), body)

    if role in allowed:
        assert response.status_code == success, response.json()
        assert AuditEvent.objects.count() == 1
    else:
        assert response.status_code == 403
        assert "Your role does not allow you to" in response.json()["error"]
        assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("role", roles.ROLES)
@pytest.mark.parametrize(("method", "path", "body", "allowed", "success"), [w for w in WRITES if "{" in w[1]])
def test_it_answers_404_for_writes_to_unknown_objects(
    persona, targets, role, method, path, body, allowed, success
):
    missing = {"device": "no-such-device", "cohort": "no-such-cohort"}

    response = call(persona(role), method, path.format(**missing), body)

    # The permission is checked first, so a role that may not write learns nothing about what exists.
    assert response.status_code == (404 if role in allowed else 403)
    assert response.json()["error"]


@pytest.mark.parametrize("role", roles.ROLES)
@pytest.mark.parametrize("path", READS)
def test_it_lets_every_role_read(persona, targets, role, path):
    assert persona(role).get(path.format(**targets)).status_code == 200


@pytest.mark.parametrize("path", READS)
def test_it_refuses_a_person_without_a_role(targets, path):
    response = client_for(UserFactory(username="nobody")).get(path.format(**targets))

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "body"), [("get", p, None) for p in READS] + [w[:3] for w in WRITES]
)
def test_it_asks_anonymous_callers_to_authenticate(api, targets, method, path, body):
    response = call(api, method, path.format(**targets), body)

    assert response.status_code == 401
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"), [("get", p, None) for p in READS] + [w[:3] for w in WRITES]
)
def test_it_refuses_a_device_credential_on_peoples_endpoints(
    device, device_client, targets, method, path, body
):
    response = call(device_client(device), method, path.format(**targets), body)

    assert response.status_code == 403
    assert response.json() == {
        "error": "This endpoint is for people: a device credential cannot be used here."
    }
    assert not AuditEvent.objects.exists()


def test_it_accepts_a_persons_api_token_on_peoples_endpoints(targets):
    token = Token.objects.create(user=UserFactory(username="rm", role=roles.RELEASE_MANAGER))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    assert client.post("/api/cohorts", {"name": "by-script"}, format="json").status_code == 201


@pytest.mark.parametrize(("method", "path", "body"), DEVICE_ENDPOINTS)
def test_it_refuses_a_persons_api_token_on_device_endpoints(targets, method, path, body):
    token = Token.objects.create(user=UserFactory(username="admin-script", role=roles.ADMIN))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = call(client, method, path.format(**targets), body)

    assert response.status_code == 403
    assert "for devices" in response.json()["error"]


@pytest.mark.parametrize(("method", "path", "body"), DEVICE_ENDPOINTS)
def test_it_refuses_a_logged_in_person_on_device_endpoints(admin_client, targets, method, path, body):
    response = call(admin_client, method, path.format(**targets), body)

    assert response.status_code == 403
    assert "for devices" in response.json()["error"]


@pytest.mark.parametrize(("method", "path", "body"), DEVICE_ENDPOINTS)
def test_it_asks_anonymous_callers_of_device_endpoints_for_a_device_credential(
    api, targets, method, path, body
):
    response = call(api, method, path.format(**targets), body)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Device"


@pytest.mark.parametrize("header", ["Device", "Device a b", "Device wrong-token"])
def test_it_refuses_bad_device_credentials_with_401(api, targets, header):
    api.credentials(HTTP_AUTHORIZATION=header)

    response = api.get("/api/device/desired-state")

    assert response.status_code == 401
    assert response.json()["error"]
