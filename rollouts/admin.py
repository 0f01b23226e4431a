"""Admin of releases, plans, rollouts and what they produce: the release managers' workbench.

Rollout actions (start, promote, pause, resume, rollback) are admin actions that call
rollouts.services after rollouts.permissions.can_act — the same rules as the API and the portal.
Rollouts, plans, releases and incidents are saved through their services (rollouts.services)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from rollouts.choices import IncidentStatus
from rollouts.models import DeviceDeployment, Evaluation, Incident, Release, Rollout, RolloutPlan
from rollouts.permissions import can_act, can_override_gates, override_refusal
from rollouts.services import incidents, lifecycle, plans, releases
from saferoll.core.admin import ReadOnlyAdminMixin, ServiceAdminMixin, adopt, pretty_json, refusal_text
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AuditEvent

# --- Releases ----------------------------------------------------------------------------------


class ReleaseAdminForm(forms.ModelForm):
    artifact_url = forms.URLField(required=False, max_length=500, assume_scheme="https")

    class Meta:
        model = Release
        fields = [
            "version",
            "is_stable",
            "previous_release",
            "notes",
            "artifact",
            "artifact_url",
            "size_bytes",
            "sha256",
            "signature",
            "compatible_variants",
        ]
        # No "clear" box: an artifact is replaced by uploading another one, never silently dropped.
        widgets = {"artifact": forms.FileInput}
        help_texts = {
            "size_bytes": "Computed from the file when you upload one.",
            "sha256": "Computed from the file when you upload one; else 64 hexadecimal characters.",
        }

    def clean_sha256(self) -> str:
        try:
            return releases.normalize_sha256(self.cleaned_data.get("sha256") or "")
        except ServiceRefused as exc:
            raise ValidationError(exc.message) from None

    def clean(self):
        super().clean()
        previous = self.cleaned_data.get("previous_release")
        if previous is not None and self.instance.pk and previous.pk == self.instance.pk:
            self.add_error("previous_release", "A release cannot roll back to itself.")
        return self.cleaned_data


@admin.register(Release)
class ReleaseAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = ReleaseAdminForm
    list_display = [
        "version",
        "is_stable",
        "previous_release",
        "size_bytes",
        "has_artifact",
        "variants",
        "created_by",
        "created_at",
    ]
    list_filter = ["is_stable", "compatible_variants"]
    search_fields = ["version", "notes"]
    list_select_related = ["previous_release", "created_by"]
    filter_horizontal = ["compatible_variants"]
    readonly_fields = ["created_by", "created_at"]
    fieldsets = [
        (None, {"fields": ["version", "is_stable", "previous_release", "notes"]}),
        ("Artifact", {"fields": ["artifact", "artifact_url", "size_bytes", "sha256", "signature"]}),
        ("Compatibility", {"fields": ["compatible_variants"]}),
        ("Record", {"fields": ["created_by", "created_at"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("compatible_variants")

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        # The version is the release's identity for devices and rollouts: it never changes.
        return [*fields, "version"] if obj is not None else fields

    @admin.display(boolean=True, description="file")
    def has_artifact(self, release: Release) -> bool:
        return bool(release.artifact)

    @admin.display(description="variants")
    def variants(self, release: Release) -> str:
        return ", ".join(variant.name for variant in release.compatible_variants.all()) or "all"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        upload = data.get("artifact") if "artifact" in form.changed_data else None
        variants = [variant.name for variant in data.get("compatible_variants", [])]
        if change:
            changed = {
                name: data[name]
                for name in form.changed_data
                if name in releases.RELEASE_EDITABLE_FIELDS and name != "compatible_variants"
            }
            if "compatible_variants" in form.changed_data:
                changed["compatible_variants"] = variants
            if upload:
                # A new file brings its own size and digest.
                changed.pop("size_bytes", None)
                changed.pop("sha256", None)
                changed["artifact"] = upload
            stored = Release.objects.get(pk=obj.pk)
            saved = releases.release_update(
                release=stored, actor=request.user, data=changed, reason="Saved in the admin."
            )
        else:
            saved = releases.release_create(
                version=data["version"],
                actor=request.user,
                artifact=upload,
                artifact_url=data.get("artifact_url", ""),
                size_bytes=None if upload else data.get("size_bytes"),
                sha256="" if upload else data.get("sha256", ""),
                signature=data.get("signature", ""),
                compatible_variants=variants,
                notes=data.get("notes", ""),
                is_stable=data.get("is_stable", False),
                previous_release=data.get("previous_release"),
            )
        adopt(obj, saved)

    def save_related(self, request, form, formsets, change):
        # The service has set the variants already; only inlines (none today) remain.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)


# --- Plans ---------------------------------------------------------------------------------------


class RolloutPlanAdminForm(forms.ModelForm):
    """Checks stages and gates with the plan service's own rules, so errors show on the form."""

    class Meta:
        model = RolloutPlan
        fields = [
            "name",
            "description",
            "stages",
            "gate_config",
            "activation_window_start",
            "activation_window_end",
            "maintenance_windows",
            "is_default",
        ]
        help_texts = {
            "stages": 'A list like [{"ring": "pilot", "bake_minutes": 2, "auto_advance": true}, ...].',
            "gate_config": "Thresholds by name (see rollouts.gates.GateConfig); missing keys take the defaults. "
            'Gates on custom KPIs: "custom_gates": [{"metric": "crash_loops", "operator": "<=", "threshold": 0.05}].',
            "maintenance_windows": 'A list like [{"region": "eu-west", "time_zone": "Europe/Paris", "start": '
            '"02:00", "end": "05:00", "weekdays": ["mon", "tue"]}]; "site" instead of "region", or neither '
            "for the whole fleet.",
        }

    def clean_stages(self):
        try:
            return plans.plan_clean_stages(self.cleaned_data["stages"])
        except ServiceRefused as exc:
            raise ValidationError(exc.message) from None

    def clean_gate_config(self):
        try:
            return plans.plan_clean_gate_config(self.cleaned_data.get("gate_config"))
        except ServiceRefused as exc:
            raise ValidationError(exc.message) from None

    def clean_maintenance_windows(self):
        try:
            return plans.plan_clean_maintenance_windows(self.cleaned_data.get("maintenance_windows"))
        except ServiceRefused as exc:
            raise ValidationError(exc.message) from None


@admin.register(RolloutPlan)
class RolloutPlanAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = RolloutPlanAdminForm
    list_display = ["name", "rings", "is_default", "rollout_count", "created_at"]
    list_filter = ["is_default"]
    search_fields = ["name", "description"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_rollouts=Count("rollouts"))

    def get_readonly_fields(self, request, obj=None):
        # Rollouts and presets find a plan by name: it is fixed once created.
        return ["created_at"] if obj is None else ["name", "created_at", "what_if"]

    @admin.display(description="what would this plan do")
    def what_if(self, plan: RolloutPlan) -> str:
        url = reverse("portal:plan-whatif", args=[plan.name])
        return format_html('<a href="{}">Replay simulated rollouts of this plan</a>', url)

    @admin.display(description="stages")
    def rings(self, plan: RolloutPlan) -> str:
        stages = plan.stages if isinstance(plan.stages, list) else []
        return " → ".join(str(stage.get("ring", "?")) for stage in stages if isinstance(stage, dict))

    @admin.display(description="rollouts", ordering="_rollouts")
    def rollout_count(self, plan: RolloutPlan) -> int:
        return plan._rollouts  # type: ignore[attr-defined]  # annotated by get_queryset

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            changed = {name: data[name] for name in form.changed_data if name in plans.PLAN_EDITABLE_FIELDS}
            saved = plans.plan_update(
                plan=RolloutPlan.objects.get(pk=obj.pk), actor=request.user, reason="", **changed
            )
        else:
            saved = plans.plan_create(
                actor=request.user,
                name=data["name"],
                stages=data["stages"],
                gate_config=data.get("gate_config"),
                description=data.get("description", ""),
                activation_window_start=data.get("activation_window_start"),
                activation_window_end=data.get("activation_window_end"),
                maintenance_windows=data.get("maintenance_windows"),
                is_default=data.get("is_default", False),
            )
        adopt(obj, saved)


# --- Rollouts ------------------------------------------------------------------------------------

_REASON_PAGE = engines["django"].from_string(
    """{% extends "admin/base_site.html" %}
{% block breadcrumbs %}<div class="breadcrumbs"><a href="{% url 'admin:index' %}">Home</a>
&rsaquo; <a href="{% url 'admin:rollouts_rollout_changelist' %}">Rollouts</a> &rsaquo; {{ title }}</div>
{% endblock %}
{% block content %}
<p>{{ question }}</p>
<ul>{% for rollout in rollouts %}<li>{{ rollout.rollout_id }} — {{ rollout.release.version }},
 {{ rollout.state }}</li>{% endfor %}</ul>
<form method="post">{% csrf_token %}
{% for rollout in rollouts %}<input type="hidden" name="{{ checkbox_name }}" value="{{ rollout.pk }}">
{% endfor %}<input type="hidden" name="action" value="{{ action }}">
<input type="hidden" name="confirm" value="yes">
{{ form.as_p }}
<div class="submit-row"><input type="submit" class="default" value="{{ submit_label }}">
<a href="{% url 'admin:rollouts_rollout_changelist' %}" class="button cancel-link">Cancel</a></div>
</form>
{% endblock %}"""
)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))

    def __init__(self, *args, required: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = required


class RolloutEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The rollout's event timeline: its audit events, newest first."""

    model = AuditEvent
    fk_name = "rollout"
    extra = 0
    fields = readonly_fields = ("created_at", "actor_name", "action", "from_ring", "to_ring", "reason")
    ordering = ["-created_at", "-id"]
    verbose_name = "event"
    verbose_name_plural = "events"
    show_change_link = True


class RolloutAddForm(forms.ModelForm):
    class Meta:
        model = Rollout
        fields = ["release", "plan"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].required = False
        self.fields["plan"].help_text = "Leave empty for the default plan."


@admin.register(Rollout)
class RolloutAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["rollout_id", "version", "state_display", "current_ring", "created_by", "created_at"]
    list_filter = ["status", "current_ring", "plan"]
    search_fields = ["rollout_id", "release__version"]
    list_select_related = ["release", "created_by", "plan"]
    date_hierarchy = "created_at"
    actions = ["start", "promote", "promote_anyway", "pause", "resume", "resume_anyway", "rollback"]
    inlines = [RolloutEventInline]
    readonly_fields = [
        "rollout_id",
        "release",
        "plan",
        "state_display",
        "status",
        "current_ring",
        "created_by",
        "created_at",
        "updated_at",
        "started_at",
        "stage_started_at",
        "finished_at",
        "failing_streak",
        "stages_display",
        "gates_display",
    ]

    @admin.display(description="version", ordering="release__version")
    def version(self, rollout: Rollout) -> str:
        return rollout.release.version

    @admin.display(description="state", ordering="status")
    def state_display(self, rollout: Rollout) -> str:
        return rollout.state

    @admin.display(description="stages (frozen)")
    def stages_display(self, rollout: Rollout) -> str:
        return pretty_json(rollout.stages)

    @admin.display(description="gate thresholds (frozen)")
    def gates_display(self, rollout: Rollout) -> str:
        return pretty_json(rollout.gate_config)

    # Adding goes through rollout_create; nothing of a rollout is edited by hand afterwards: its
    # state moves only through the actions, and its plan settings are frozen at creation.
    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = RolloutAddForm
            kwargs["fields"] = ["release", "plan"]
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ["release", "plan"] if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def has_add_permission(self, request) -> bool:
        return can_act(request.user, "create")

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # A rollout is part of the history its audit events point at.
        return False

    def save_model(self, request, obj, form, change):
        saved = lifecycle.rollout_create(
            release=form.cleaned_data["release"], plan=form.cleaned_data.get("plan"), actor=request.user
        )
        adopt(obj, saved)

    def save_related(self, request, form, formsets, change):
        """Nothing else to save: the service made the rollout and its CREATED event."""

    # One has_<action>_permission per action, all answered by rollouts.permissions.can_act, so a
    # role sees only the actions it may take (and _transition checks again before acting).
    def has_start_permission(self, request) -> bool:
        return can_act(request.user, "start")

    def has_promote_permission(self, request) -> bool:
        return can_act(request.user, "promote")

    def has_pause_permission(self, request) -> bool:
        return can_act(request.user, "pause")

    def has_resume_permission(self, request) -> bool:
        return can_act(request.user, "resume")

    def has_rollback_permission(self, request) -> bool:
        return can_act(request.user, "rollback")

    def has_override_permission(self, request) -> bool:
        return can_override_gates(request.user)

    @admin.action(description="Start selected rollouts (deploy to the first ring)", permissions=["start"])
    def start(self, request, queryset):
        return self._transition(request, queryset, "start")

    @admin.action(description="Promote selected rollouts to their next ring", permissions=["promote"])
    def promote(self, request, queryset):
        return self._transition(request, queryset, "promote")

    @admin.action(description="Pause selected rollouts…", permissions=["pause"])
    def pause(self, request, queryset):
        return self._ask_reason(request, queryset, "pause", required=False)

    @admin.action(description="Resume selected rollouts", permissions=["resume"])
    def resume(self, request, queryset):
        return self._transition(request, queryset, "resume")

    @admin.action(description="Roll back selected rollouts…", permissions=["rollback"])
    def rollback(self, request, queryset):
        return self._ask_reason(request, queryset, "rollback", required=True)

    @admin.action(
        description="Promote selected rollouts against a WAIT or PAUSE verdict (with a reason)…",
        permissions=["promote", "override"],
    )
    def promote_anyway(self, request, queryset):
        return self._ask_reason(request, queryset, "promote", required=True, override=True)

    @admin.action(
        description="Resume selected rollouts against a PAUSE verdict (with a reason)…",
        permissions=["resume", "override"],
    )
    def resume_anyway(self, request, queryset):
        return self._ask_reason(request, queryset, "resume", required=True, override=True)

    _PAST = {
        "start": "Started",
        "promote": "Promoted",
        "pause": "Paused",
        "resume": "Resumed",
        "rollback": "Rolled back",
    }

    def _ask_reason(self, request, queryset, action: str, *, required: bool, override: bool = False):
        """An intermediate page asks why before pausing, rolling back or overriding the gates; its
        form posts back here."""
        if request.POST.get("confirm"):
            form = ReasonForm(request.POST, required=required)
            if form.is_valid():
                return self._transition(
                    request, queryset, action, reason=form.cleaned_data["reason"], override=override
                )
        else:
            form = ReasonForm(required=required)
        verb = "roll back" if action == "rollback" else action
        against = " against the gates" if override else ""
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} rollouts{against}",
            "question": f"Why {verb} these rollouts{against}? The reason goes into the audit log"
            + (" as an override." if override else "." if required else " (optional)."),
            "rollouts": queryset.select_related("release"),
            "form": form,
            "action": f"{action}_anyway" if override else action,
            "checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "submit_label": f"Yes, {verb}{' anyway' if override else ''}",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, _REASON_PAGE, context)

    def _transition(self, request, queryset, action: str, *, reason: str = "", override: bool = False):
        if not can_act(request.user, action):
            self.message_user(request, f"You are not allowed to {action} rollouts.", messages.ERROR)
            return None
        if override and not can_override_gates(request.user):
            self.message_user(request, override_refusal(request.user) or "", messages.ERROR)
            return None
        done = []
        for rollout in queryset.select_related("release"):
            try:
                if override:
                    updated = lifecycle.OVERRIDES[action](
                        rollout=rollout, actor=request.user, reason=reason, override=True
                    )
                else:
                    updated = lifecycle.TRANSITIONS[action](
                        rollout=rollout, actor=request.user, reason=reason
                    )
            except ServiceRefused as exc:
                message = refusal_text(exc)
                if rollout.rollout_id not in message:
                    message = f"{rollout.rollout_id}: {message}"
                self.message_user(request, message, messages.ERROR)
                continue
            done.append(f"{rollout.rollout_id} ({getattr(updated, 'state', None) or rollout.state})")
        if done:
            self.message_user(request, f"{self._PAST[action]}: {', '.join(done)}.", messages.SUCCESS)
        return None


# --- What rollouts produce (written by SafeRoll only) ---------------------------------------------


@admin.register(DeviceDeployment)
class DeviceDeploymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["device", "rollout", "ring", "state", "from_version", "attempts", "state_changed_at"]
    list_filter = ["state", "ring"]
    search_fields = ["device__device_id", "rollout__rollout_id", "last_error"]
    list_select_related = ["device", "rollout"]
    show_full_result_count = False
    date_hierarchy = "state_changed_at"


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "rollout", "ring", "action", "source", "reason"]
    list_filter = ["action", "source", "ring"]
    search_fields = ["rollout__rollout_id", "reason"]
    list_select_related = ["rollout"]
    show_full_result_count = False
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "rollout",
        "ring",
        "action",
        "source",
        "reason",
        "created_at",
        "score_display",
        "detail_display",
    )

    @admin.display(description="health score")
    def score_display(self, evaluation: Evaluation) -> str:
        """Beside the gates, never instead of them: the action above is theirs."""
        value = (evaluation.detail.get("score") or {}).get("value")
        if value is None:
            return "Not scored (too little data, or judged before scores were kept)"
        return f"{value} / 100 — weighed from the gates; it explains, the gates decide"

    @admin.display(description="gates and health")
    def detail_display(self, evaluation: Evaluation) -> str:
        return pretty_json(evaluation.detail)


# --- Incidents -----------------------------------------------------------------------------------


@admin.register(Incident)
class IncidentAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "severity_badge",
        "title",
        "release",
        "status",
        "opened_by",
        "opened_at",
        "resolved_at",
    ]
    list_filter = ["severity", "status"]
    search_fields = ["title", "description", "release__version"]
    list_select_related = ["release", "opened_by"]
    date_hierarchy = "opened_at"
    fields = [
        "severity",
        "title",
        "description",
        "release",
        "status",
        "opened_by",
        "opened_at",
        "resolved_by",
        "resolved_at",
    ]
    readonly_fields = ["status", "opened_by", "opened_at", "resolved_by", "resolved_at"]
    actions = ["resolve"]

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, incident: Incident) -> str:
        colour = {"sev1": "#b91c1c", "sev2": "#b45309"}.get(incident.severity, "#475569")
        return format_html("<strong style='color:{}'>{}</strong>", colour, incident.get_severity_display())

    def has_delete_permission(self, request, obj=None) -> bool:
        # Incidents are part of the record; resolve them instead.
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            changed = {name: data[name] for name in form.changed_data if name in form.fields}
            saved = incidents.incident_update(
                incident=Incident.objects.get(pk=obj.pk), actor=request.user, data=changed
            )
        else:
            saved = incidents.incident_open(
                severity=data["severity"],
                title=data["title"],
                description=data.get("description", ""),
                release=data.get("release"),
                actor=request.user,
            )
        adopt(obj, saved)

    def has_resolve_permission(self, request) -> bool:
        return request.user.has_perm("rollouts.change_incident")

    @admin.action(description="Resolve selected incidents", permissions=["resolve"])
    def resolve(self, request, queryset):
        resolved = 0
        for incident in queryset.filter(status=IncidentStatus.OPEN):
            try:
                incidents.incident_resolve(
                    incident=incident, actor=request.user, reason="Resolved in the admin."
                )
            except ServiceRefused as exc:
                self.message_user(request, refusal_text(exc), messages.ERROR)
                continue
            resolved += 1
        self.message_user(request, f"Resolved {resolved} incident(s).", messages.SUCCESS)
