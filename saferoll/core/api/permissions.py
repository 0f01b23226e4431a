"""Who may call which API action: one permission class, each view lists what its actions need."""

from rest_framework import permissions


def is_device_credential(auth) -> bool:
    """Whether a request was authenticated by a device's credential (`request.auth` is then the
    device, which says so: the core knows no device model)."""
    return getattr(auth, "is_device_credential", False) is True


class ActionPermission(permissions.BasePermission):
    """People only, never devices; each action needs the permission the view lists for it in
    `required_permissions = {action: ("app_label.codename", "what it allows")}`. Roles hold these
    permissions through their groups (saferoll.core.roles), so the admin and the pages check the same ones."""

    message = "You do not have permission to do this."

    def has_permission(self, request, view) -> bool:
        if is_device_credential(request.auth):
            self.message = "This endpoint is for people: a device credential cannot be used here."
            return False
        if not (request.user and request.user.is_authenticated):
            return False  # DRF answers 401: no credential of a person was presented.
        action = getattr(view, "action", None)
        if action is None:
            return True  # a method this route does not have: the view answers 405, not 403
        required = getattr(view, "required_permissions", {}).get("list" if action == "metadata" else action)
        if required is None:
            return True
        perm, what = required
        if not request.user.has_perm(perm):
            self.message = f"Your role does not allow you to {what}."
            return False
        return True
