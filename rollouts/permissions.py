"""Who may do what to rollouts and plans: the one place the API, the portal and the admin ask.

Every role reads (SPEC §11); the write actions need the Django permission named here, which the
role groups of saferoll.core.roles hand out: operators may pause, release managers and admins may do
everything.
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission

ROLLOUT_VIEW_PERMISSION = "rollouts.view_rollout"
ROLLOUT_ACTION_PERMISSIONS = {
    "create": "rollouts.add_rollout",
    "start": "rollouts.start_rollout",
    "promote": "rollouts.promote_rollout",
    "pause": "rollouts.pause_rollout",
    "resume": "rollouts.resume_rollout",
    "rollback": "rollouts.rollback_rollout",
}
# Promoting or resuming against the gates' verdict (never a ROLLBACK), with a reason.
OVERRIDE_GATES_PERMISSION = "rollouts.override_gates"
EVALUATION_VIEW_PERMISSION = "rollouts.view_evaluation"
PLAN_VIEW_PERMISSION = "rollouts.view_rolloutplan"
PLAN_ACTION_PERMISSIONS = {
    "create": "rollouts.add_rolloutplan",
    "update": "rollouts.change_rolloutplan",
    "partial_update": "rollouts.change_rolloutplan",
}
_PHRASES = {
    "create": "create rollouts",
    "start": "start rollouts",
    "promote": "promote rollouts",
    "pause": "pause rollouts",
    "resume": "resume rollouts",
    "rollback": "roll back rollouts",
}


def _allowed(user, permission: str) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(permission))


def can_act(user, action: str) -> bool:
    """Whether `user` may take a rollout action: create, start, promote, pause, resume or rollback."""
    if action not in ROLLOUT_ACTION_PERMISSIONS:
        raise ValueError(
            f"Unknown rollout action {action!r}; expected one of {', '.join(ROLLOUT_ACTION_PERMISSIONS)}."
        )
    return _allowed(user, ROLLOUT_ACTION_PERMISSIONS[action])


def can_override_gates(user) -> bool:
    """Whether `user` may promote or resume past a WAIT or PAUSE verdict (release managers)."""
    return _allowed(user, OVERRIDE_GATES_PERMISSION)


def override_refusal(user) -> str | None:
    """Why `user` may not override the gates, as a sentence, or None when they may."""
    if can_override_gates(user):
        return None
    return "Your role does not allow you to override the gates; a release manager can."


def can_view_rollouts(user) -> bool:
    return _allowed(user, ROLLOUT_VIEW_PERMISSION)


def can_edit_plans(user) -> bool:
    return _allowed(user, PLAN_ACTION_PERMISSIONS["partial_update"])


class _ActionPermission(BasePermission):
    """Reads need the view permission; a write needs the permission mapped to the viewset action."""

    view_permission = ""
    action_permissions: dict[str, str] = {}

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return _allowed(user, self.view_permission)
        action = getattr(view, "action", None)
        if action is None:
            # No handler for this method: let DRF answer 405 rather than pretend it is forbidden.
            return True
        permission = self.action_permissions.get(action)
        if permission is None:
            return False
        if not _allowed(user, permission):
            self.message = f"Your role does not allow you to {self.phrase(view.action)}."
            return False
        return True

    def phrase(self, action: str) -> str:
        return action.replace("_", " ")


class RolloutPermission(_ActionPermission):
    """The rollout viewset's reads and its create/start/promote/pause/resume/rollback actions."""

    view_permission = ROLLOUT_VIEW_PERMISSION
    action_permissions = ROLLOUT_ACTION_PERMISSIONS

    def phrase(self, action: str) -> str:
        return _PHRASES.get(action, action)


class EvaluationPermission(_ActionPermission):
    """Evaluations are read-only."""

    view_permission = EVALUATION_VIEW_PERMISSION


class PlanPermission(_ActionPermission):
    view_permission = PLAN_VIEW_PERMISSION
    action_permissions = PLAN_ACTION_PERMISSIONS

    def phrase(self, action: str) -> str:
        return "create plans" if action == "create" else "change plans"
