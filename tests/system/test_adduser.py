"""`manage.py adduser`: people, their one role and their API token, from the command line."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from saferoll.core import roles
from saferoll.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def adduser(*args: str) -> str:
    out = io.StringIO()
    call_command("adduser", *args, stdout=out)
    return out.getvalue()


def role_groups(user) -> set[str]:
    return set(user.groups.filter(name__in=roles.GROUP_NAMES.values()).values_list("name", flat=True))


def test_it_creates_a_staff_user_with_a_generated_password_and_prints_the_token():
    output = adduser("dana", "--role", "operator")

    user = get_user_model().objects.get(username="dana")
    password = re.search(r"Password: (\S+)", output).group(1)
    assert user.is_staff
    assert user.check_password(password)
    assert len(password) >= 16
    assert role_groups(user) == {"Operator"}
    assert f"API token: {Token.objects.get(user=user).key}" in output
    event = AuditEvent.objects.get(object_type="user", object_id=str(user.pk))
    assert event.action == "SET_ROLE"
    assert event.changes["after"]["role"] == "operator"


def test_it_sets_the_given_password():
    adduser("erin", "--role", "viewer", "--password", "a-long-enough-passphrase")

    assert get_user_model().objects.get(username="erin").check_password("a-long-enough-passphrase")


def test_it_updates_an_existing_user_to_exactly_one_role_and_keeps_the_token_and_password():
    first = adduser("frank", "--role", "viewer")
    password = re.search(r"Password: (\S+)", first).group(1)
    token = Token.objects.get(user__username="frank").key
    user = get_user_model().objects.get(username="frank")
    user.groups.add(Group.objects.get(name="Release manager"))
    other = Group.objects.create(name="Night shift")
    user.groups.add(other)

    second = adduser("frank", "--role", "admin")

    user.refresh_from_db()
    assert role_groups(user) == {"Admin"}
    assert user.groups.filter(name="Night shift").exists()
    assert user.check_password(password)
    assert "Password:" not in second
    assert "Updated user frank" in second
    assert f"API token: {token}" in second


def test_it_refuses_an_unknown_role_listing_the_valid_ones():
    with pytest.raises(CommandError) as refused:
        adduser("gus", "--role", "superhero")

    assert "viewer, operator, release_manager, admin" in str(refused.value)
    assert not get_user_model().objects.filter(username="gus").exists()


def test_it_refuses_a_weak_password():
    with pytest.raises(CommandError, match="Password refused"):
        adduser("hana", "--role", "viewer", "--password", "123")

    assert not get_user_model().objects.filter(username="hana").exists()
