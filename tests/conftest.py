import pytest
from rest_framework.test import APIClient

from saferoll import roles
from tests.factories import UserFactory


@pytest.fixture
def api():
    """An anonymous API client."""
    return APIClient()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def persona(db):
    """`persona("viewer")` → an API client logged in as a fresh user with that role."""

    def make(role: str) -> APIClient:
        user = UserFactory(username=f"{role}-user", role=role)
        client = client_for(user)
        client.user = user
        return client

    return make


@pytest.fixture
def release_manager(persona):
    return persona(roles.RELEASE_MANAGER)


@pytest.fixture
def viewer(persona):
    return persona(roles.VIEWER)


@pytest.fixture
def operator(persona):
    return persona(roles.OPERATOR)


@pytest.fixture
def admin_client(persona):
    return persona(roles.ADMIN)
