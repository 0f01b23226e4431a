import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory


@pytest.fixture
def gateway(db):
    """A script holding the ingest permission, authenticated with a real DRF token."""
    user = UserFactory(username="gateway")
    user.user_permissions.add(Permission.objects.get(codename="ingest_health"))
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.user = user
    return client
