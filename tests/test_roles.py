"""The role groups that the migrations create hold exactly the permissions saferoll.core.roles names."""

import pytest
from django.contrib.auth.models import Group, Permission

from saferoll.core import roles


def _labels(group: Group) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
    }


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.VIEWER, roles.OPERATOR, roles.RELEASE_MANAGER])
def test_it_gives_each_role_exactly_its_permissions_and_read_access_to_everything(role):
    granted = _labels(Group.objects.get(name=roles.GROUP_NAMES[role]))
    assert roles.ROLE_PERMISSIONS[role] <= granted
    changes = {label for label in granted if not label.split(".")[1].startswith("view_")}
    assert changes == roles.ROLE_PERMISSIONS[role]
    assert "saferoll.view_auditevent" in granted
    assert "rollouts.view_rollout" in granted


@pytest.mark.django_db
def test_it_gives_the_admin_role_every_permission_over_saferoll_and_people():
    admin = Group.objects.get(name=roles.GROUP_NAMES[roles.ADMIN])
    expected = Permission.objects.filter(content_type__app_label__in=roles.ADMIN_APPS)
    assert set(admin.permissions.all()) == set(expected)
    assert admin.permissions.filter(codename="add_user").exists()


@pytest.mark.django_db
def test_only_operators_and_above_may_raise_the_emergency_stop():
    holders = Group.objects.filter(permissions__codename="emergency_stop").values_list("name", flat=True)
    assert set(holders) == {"Operator", "Release manager", "Admin"}
