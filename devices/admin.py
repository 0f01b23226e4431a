"""Admin of the fleet: hardware variants, devices (with credential actions) and cohorts.

Devices and cohorts are saved through devices.services, like the API's writes, so the same rules
and the same audit events apply; hardware variants (no service of their own) are audited with
before/after by AuditedModelAdmin."""

from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.utils.translation import ngettext

from devices import services
from devices.models import Cohort, CohortMembership, Device, HardwareVariant
from saferoll.core.admin import AuditedModelAdmin, ServiceAdminMixin, adopt

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _DeviceCount(TypedDict):
    _devices: int


class _MemberCount(TypedDict):
    _members: int


@admin.register(HardwareVariant)
class HardwareVariantAdmin(AuditedModelAdmin):
    list_display = ["name", "description", "device_count"]
    search_fields = ["name", "description"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_devices=Count("device"))

    @admin.display(description="devices", ordering="_devices")
    def device_count(self, variant: "WithAnnotations[HardwareVariant, _DeviceCount]") -> int:
        return variant._devices


# --- Devices ---------------------------------------------------------------------------------------


class DeviceAdminForm(forms.ModelForm):
    ring = forms.ChoiceField()

    class Meta:
        model = Device
        fields = [
            "device_id",
            "variant",
            "site",
            "region",
            "ring",
            "app_version",
            "base_image_version",
            "agent_version",
            "status",
            "status_reason",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        ring_field = self.fields.get("ring")
        if isinstance(ring_field, forms.ChoiceField):
            rings = services.fleet_rings()
            current = self.instance.ring if self.instance.pk else None
            if current and current not in rings:
                rings.append(current)
            ring_field.choices = [(ring, ring) for ring in rings]

    def clean_device_id(self) -> str:
        device_id = self.cleaned_data["device_id"]
        services.validate_device_id(device_id)
        return device_id


@admin.register(Device)
class DeviceAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = DeviceAdminForm
    list_display = [
        "device_id",
        "ring",
        "variant",
        "app_version",
        "status",
        "last_heartbeat",
        "site",
        "region",
        "has_credential",
    ]
    list_filter = ["ring", "status", "variant", "region"]
    search_fields = ["device_id", "site", "region"]
    list_select_related = ["variant"]
    # The fleet is large: skip the second COUNT(*) of the unfiltered table on every page.
    show_full_result_count = False
    actions = ["rotate_credential", "revoke_credential"]
    # The token hash is not editable and never listed: the admin never shows a stored credential.
    _ADD_FIELDSETS = [
        (None, {"fields": ["device_id", "variant", "site", "region", "ring"]}),
        ("Installed versions", {"fields": ["app_version", "base_image_version", "agent_version"]}),
    ]
    _CHANGE_FIELDSETS = [
        (None, {"fields": ["device_id", "variant", "site", "region", "ring"]}),
        ("State", {"fields": ["status", "status_reason", "last_heartbeat"]}),
        (
            "Installed versions (reported by the device)",
            {"fields": ["app_version", "base_image_version", "agent_version"]},
        ),
        ("Credential", {"fields": ["has_credential", "token_issued_at", "created_at"]}),
    ]
    # What the device reports about itself, and its identity, are not edited by people.
    _CHANGE_READONLY = [
        "device_id",
        "app_version",
        "base_image_version",
        "agent_version",
        "last_heartbeat",
        "has_credential",
        "token_issued_at",
        "created_at",
    ]

    def get_fieldsets(self, request, obj=None):
        return self._ADD_FIELDSETS if obj is None else self._CHANGE_FIELDSETS

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self._CHANGE_READONLY

    @admin.display(boolean=True, description="credential")
    def has_credential(self, device: Device) -> bool:
        return device.has_credential

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        variant = data.get("variant")
        if change:
            changed = {
                name: data[name] for name in form.changed_data if name in services.DEVICE_EDITABLE_FIELDS
            }
            if "variant" in changed:
                changed["variant"] = variant.name if variant else None
            saved = services.device_update(
                device=Device.objects.get(pk=obj.pk),
                actor=request.user,
                data=changed,
                reason="Saved in the admin.",
            )
        else:
            saved, token = services.device_create(
                actor=request.user,
                device_id=data["device_id"],
                ring=data.get("ring") or None,
                variant=variant.name if variant else None,
                site=data.get("site", ""),
                region=data.get("region", ""),
                app_version=data.get("app_version", ""),
                base_image_version=data.get("base_image_version", ""),
                agent_version=data.get("agent_version", ""),
            )
            # The token is shown this once; only its hash is stored.
            self._show_token(request, saved, token)
        adopt(obj, saved)

    def _show_token(self, request, device: Device, token: str) -> None:
        self.message_user(
            request,
            f"Token of {device.device_id}: {token} — copy it now, it will not be shown again.",
            messages.WARNING,
        )

    def has_manage_credentials_permission(self, request) -> bool:
        return request.user.has_perm("devices.manage_device_credentials")

    @admin.action(
        description="Rotate credential (shows the new token once)", permissions=["manage_credentials"]
    )
    def rotate_credential(self, request, queryset):
        for device in queryset:
            token = services.device_rotate_credential(device=device, actor=request.user)
            self._show_token(request, device, token)

    @admin.action(description="Revoke credential", permissions=["manage_credentials"])
    def revoke_credential(self, request, queryset):
        count = 0
        for device in queryset:
            services.device_revoke_credential(device=device, actor=request.user)
            count += 1
        self.message_user(
            request,
            ngettext("Revoked the credential of %d device.", "Revoked the credentials of %d devices.", count)
            % count,
            messages.SUCCESS,
        )


# --- Cohorts ---------------------------------------------------------------------------------------


class CohortMembershipInline(admin.TabularInline):
    """Members of a cohort. Rows added and deleted here go through cohort_change_members."""

    model = CohortMembership
    extra = 0
    fields = ["device", "added_by", "added_at"]
    readonly_fields = ["added_by", "added_at"]
    autocomplete_fields = ["device"]
    verbose_name = "member"
    verbose_name_plural = "members"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("device", "added_by")


def _membership_changes(formset) -> tuple[list[str], list[str]]:
    """The device ids a membership formset adds and removes."""
    add: list[str] = []
    remove: list[str] = []
    for row in formset.forms:
        if not getattr(row, "cleaned_data", None):
            continue
        deleted = formset.can_delete and formset._should_delete_form(row)
        device = row.cleaned_data.get("device")
        if row.instance.pk is None:
            if not deleted and device is not None:
                add.append(device.device_id)
            continue
        # The form has already put any new device on row.instance; the stored row has the old one.
        original = CohortMembership.objects.select_related("device").get(pk=row.instance.pk).device
        if deleted:
            remove.append(original.device_id)
        elif "device" in row.changed_data and device is not None:
            remove.append(original.device_id)
            add.append(device.device_id)
    return add, remove


@admin.register(Cohort)
class CohortAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "member_count", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "description"]
    fields = ["name", "kind", "description", "created_at"]
    inlines = [CohortMembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("memberships"))

    def get_readonly_fields(self, request, obj=None):
        # Plans name their cohorts, so a cohort's name is fixed once created.
        return ["created_at"] if obj is None else ["name", "created_at"]

    @admin.display(description="members", ordering="_members")
    def member_count(self, cohort: "WithAnnotations[Cohort, _MemberCount]") -> int:
        return cohort._members

    def save_model(self, request, obj, form, change):
        if not change:
            # Created in save_related, together with the members of the inline, as one event.
            return
        changed = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in services.COHORT_EDITABLE_FIELDS
        }
        if changed:
            adopt(
                obj,
                services.cohort_update(
                    cohort=Cohort.objects.get(pk=obj.pk), actor=request.user, data=changed
                ),
            )

    def save_related(self, request, form, formsets, change):
        add: list[str] = []
        remove: list[str] = []
        for formset in formsets:
            if formset.model is CohortMembership:
                formset_add, formset_remove = _membership_changes(formset)
                add += formset_add
                remove += formset_remove
                # The service writes the rows; the admin's change message must not list them twice.
                formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if not change:
            data = form.cleaned_data
            cohort = services.cohort_create(
                actor=request.user,
                name=data["name"],
                kind=data["kind"],
                description=data.get("description", ""),
                device_ids=add,
            )
            adopt(form.instance, cohort)
            return
        if add or remove:
            services.cohort_change_members(cohort=form.instance, add=add, remove=remove, actor=request.user)

    def save_formset(self, request, form, formset, change):
        """Memberships are written by save_related through the service, never by the formset."""
