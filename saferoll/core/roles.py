"""The four roles of SPEC §11, as Django groups with permissions.

The groups are created and kept in sync by migrations (saferoll/core/migrations), so an admin only has
to put people in them. `ROLE_PERMISSIONS` is the single place that says what each role may do.
"""

from django.db.models import Q

SAFEROLL_APPS = ("saferoll", "devices", "rollouts", "telemetry")
# Admins also manage people and their API tokens.
ADMIN_APPS = (*SAFEROLL_APPS, "auth", "authtoken")

VIEWER = "viewer"
OPERATOR = "operator"
RELEASE_MANAGER = "release_manager"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, RELEASE_MANAGER, ADMIN)
GROUP_NAMES = {
    VIEWER: "Viewer",
    OPERATOR: "Operator",
    RELEASE_MANAGER: "Release manager",
    ADMIN: "Admin",
}

# Beyond viewing everything (every role may), what each role may do, as app_label.codename.
_OPERATOR = {
    "saferoll.emergency_stop",
    "saferoll.change_alert",
    "rollouts.pause_rollout",
    "rollouts.add_incident",
    "rollouts.change_incident",
    "devices.manage_device_credentials",
}
_RELEASE_MANAGER = _OPERATOR | {
    "rollouts.add_rollout",
    "rollouts.start_rollout",
    "rollouts.promote_rollout",
    "rollouts.resume_rollout",
    "rollouts.rollback_rollout",
    "rollouts.override_gates",
    "rollouts.add_release",
    "rollouts.change_release",
    "rollouts.add_rolloutplan",
    "rollouts.change_rolloutplan",
    "devices.add_cohort",
    "devices.change_cohort",
    "devices.delete_cohort",
    "devices.add_cohortmembership",
    "devices.change_cohortmembership",
    "devices.delete_cohortmembership",
    "devices.add_device",
    "devices.change_device",
    "devices.add_hardwarevariant",
    "devices.change_hardwarevariant",
}
ROLE_PERMISSIONS = {VIEWER: set(), OPERATOR: _OPERATOR, RELEASE_MANAGER: _RELEASE_MANAGER}


def sync_role_groups(apps) -> None:
    """Create the role groups and give each exactly its permissions. Safe to run again."""
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; create them now so groups can use them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ours = Permission.objects.filter(content_type__app_label__in=SAFEROLL_APPS)
    view_all = ours.filter(codename__startswith="view_")

    for role, group_name in GROUP_NAMES.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        if role == ADMIN:
            group.permissions.set(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
            continue
        wanted = Q()
        for label in ROLE_PERMISSIONS[role]:
            app_label, codename = label.split(".")
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        # A permission whose model a later migration creates is granted when that migration re-syncs;
        # tests/test_roles.py checks that every role ends up with exactly what it names.
        extra = list(ours.filter(wanted)) if ROLE_PERMISSIONS[role] else []
        group.permissions.set([*view_all, *extra])
