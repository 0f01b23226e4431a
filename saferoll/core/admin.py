"""Admin of the shared models (audit log, fleet switches, alerts) and the admin building blocks
that every SafeRoll app's admin uses: audited saves and read-only registrations."""

import datetime as dt
import decimal
import json
import uuid
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models.fields.files import FieldFile
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from saferoll.core.audit import audit_record, diff_fields
from saferoll.core.errors import ServiceRefused
from saferoll.core.forms import AdminSignInForm
from saferoll.core.models import Alert, AuditEvent, FleetState

admin.site.site_header = "SafeRoll administration"
admin.site.site_title = "SafeRoll admin"
admin.site.index_title = "Release managers' workbench"
# The admin's sign-in is limited like the portal's (saferoll.core.ratelimits): the form refuses a
# locked-out attempt unchecked, and the view (saferoll.urls routes it) answers it 429.
admin.site.login_form = AdminSignInForm

# Admin saves are audited with these actions; the object type says what was saved.
ACTION_CREATE = "CREATE"
ACTION_UPDATE = "UPDATE"
ACTION_DELETE = "DELETE"
ADMIN_REASON = "Saved in the admin."

# Secrets never reach an audit event, not even hashed.
NEVER_RECORDED = {"token_hash", "password"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, FieldFile):
        return value.name or ""
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


def model_state(obj: models.Model, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The editable state of a row as JSON-ready values, for the before/after of an audit event.

    Timestamps that move on every save and secrets are left out; many-to-many fields are listed by
    name, except those with their own through model (memberships are audited by their service)."""
    state: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key or field.name in exclude or field.name in NEVER_RECORDED:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            continue
        state[field.name] = _jsonable(field.value_from_object(obj))
    if obj.pk is not None:
        for field in obj._meta.many_to_many:
            through = field.remote_field.through
            if field.name in exclude or through is None or not through._meta.auto_created:
                continue
            state[field.name] = sorted(str(related) for related in getattr(obj, field.name).all())
    return state


def adopt(target: models.Model, saved: models.Model) -> None:
    """Make the admin's unsaved instance the row a service saved, so the admin's redirect,
    change message and log entry point at it."""
    for field in saved._meta.concrete_fields:
        setattr(target, field.attname, getattr(saved, field.attname))
    target._state.adding = False
    target._state.db = saved._state.db


def refusal_text(exc: Exception) -> str:
    """The sentence(s) of a service's refusal, whatever exception carried them."""
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    if isinstance(exc, ServiceRefused):
        reason = exc.extra.get("reason")  # why the gates said no, when they did
        return f"{exc.sentences().rstrip('.')}. {reason}" if reason else exc.sentences()
    return getattr(exc, "message", None) or str(exc)


class ServiceAdminMixin(admin.ModelAdmin):
    """For admins whose saves call a service: a refusal the form could not foresee (a race, a
    rule that needs the database) rolls the whole save back and is shown as an error message
    instead of a server error. Forms still validate what they can, so this stays rare."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (ServiceRefused, ValidationError) as exc:
            # The exception left the admin's transaction, so nothing of this save was kept.
            self.message_user(request, f"Not saved: {refusal_text(exc)}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class AuditedModelAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Every save and delete made in the admin appends one audit event with before/after.

    Used for models whose writes have no dedicated service; the Django admin wraps each save
    (and its inlines) in one transaction, so the row and its event commit together."""

    audit_exclude: tuple[str, ...] = ()

    def _state(self, obj: models.Model) -> dict[str, Any]:
        return model_state(obj, exclude=self.audit_exclude)

    def save_model(self, request, obj, form, change):
        # The form has already written its values onto obj: read the stored row for "before".
        before = self._state(type(obj)._default_manager.get(pk=obj.pk)) if change else {}
        request._saferoll_audit_before = before
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        obj = form.instance
        before = getattr(request, "_saferoll_audit_before", {})
        changes = diff_fields(before, self._state(obj))
        if changes or not change:
            audit_record(
                actor=request.user,
                action=ACTION_UPDATE if change else ACTION_CREATE,
                obj=obj,
                changes=changes,
                reason=ADMIN_REASON,
            )

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=ACTION_DELETE,
                obj=obj,
                changes={"before": self._state(obj), "after": {}},
                reason="Deleted in the admin.",
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)


class ReadOnlyAdminMixin:
    """Rows written only by SafeRoll itself: anyone allowed to view them may look, nobody edits."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def pretty_json(value: Any) -> str:
    if value in (None, "", {}):
        return "—"
    return format_html("<pre style='margin:0'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


# Every field of an audit event, shown and none editable.
AUDIT_EVENT_FIELDS = (
    "created_at",
    "actor_name",
    "actor",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "rollout",
    "from_ring",
    "to_ring",
    "reason",
    "changes_display",
    "evaluation_display",
)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only audit log: nobody, not even a superuser, adds, changes or deletes an event."""

    list_display = [
        "created_at",
        "actor_name",
        "action",
        "object_type",
        "object_repr",
        "rollout",
        "transition",
        "short_reason",
    ]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_name", "object_repr", "reason"]
    date_hierarchy = "created_at"
    list_select_related = ["rollout"]
    show_full_result_count = False
    fields = AUDIT_EVENT_FIELDS
    readonly_fields = AUDIT_EVENT_FIELDS

    @admin.display(description="rings")
    def transition(self, event: AuditEvent) -> str:
        if not (event.from_ring or event.to_ring):
            return ""
        return f"{event.from_ring or '—'} → {event.to_ring or '—'}"

    @admin.display(description="reason")
    def short_reason(self, event: AuditEvent) -> str:
        return event.reason if len(event.reason) <= 80 else event.reason[:79] + "…"

    @admin.display(description="changes")
    def changes_display(self, event: AuditEvent) -> str:
        return pretty_json(event.changes)

    @admin.display(description="evaluation")
    def evaluation_display(self, event: AuditEvent) -> str:
        return pretty_json(event.evaluation)

    def get_actions(self, request):
        # No bulk delete, even for superusers.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(FleetState)
class FleetStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The emergency stop is raised and lifted through its service (portal, API), never edited here."""

    list_display = [
        "__str__",
        "emergency_stop",
        "emergency_raised_by",
        "emergency_raised_at",
        "autopilot_last_run",
    ]
    readonly_fields = [
        "emergency_stop",
        "emergency_reason",
        "emergency_raised_by",
        "emergency_raised_at",
        "autopilot_last_run",
    ]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "level", "kind", "title", "rollout", "device", "acknowledged_at"]
    list_filter = ["level", "kind", ("acknowledged_at", admin.EmptyFieldListFilter)]
    search_fields = ["title", "message", "rollout__rollout_id", "device__device_id"]
    list_select_related = ["rollout", "device"]
    date_hierarchy = "created_at"
