"""Admin of raw health checks and their per-minute rollups: read-only, built for tables with
millions of rows."""

from django.conf import settings
from django.contrib import admin

from devices.models import Device
from saferoll.core.admin import ReadOnlyAdminMixin
from telemetry.models import (
    DeviceCheckState,
    HealthCheck,
    HealthGroup,
    HealthMinute,
    HealthMinuteMetric,
    HealthMinuteValue,
)


# The default filters would list their choices with SELECT DISTINCT over the whole table; these
# take them from the small tables (configured rings, known releases) instead.
class RingFilter(admin.SimpleListFilter):
    title = "ring"
    parameter_name = "ring"

    def lookups(self, request, model_admin):
        return [(ring, ring) for ring in settings.SAFEROLL_RING_SHARES]

    def queryset(self, request, queryset):
        return queryset.filter(ring=self.value()) if self.value() else queryset


class VersionFilter(admin.SimpleListFilter):
    title = "version"
    parameter_name = "version"

    def lookups(self, request, model_admin):
        # The versions the fleet runs now: the checks arriving are of these (the devices table is far
        # smaller than the checks', and telemetry knows no releases).
        versions = (
            Device.objects.exclude(app_version="")
            .order_by("app_version")
            .values_list("app_version", flat=True)
            .distinct()[:50]
        )
        return [(version, version) for version in versions]

    def queryset(self, request, queryset):
        return queryset.filter(version=self.value()) if self.value() else queryset


@admin.register(HealthCheck)
class HealthCheckAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "received_at",
        "device",
        "ring",
        "version",
        "boot_ok",
        "crash_free",
        "checkin_latency_ms",
        "availability",
        "device_time",
    ]
    list_filter = [RingFilter, VersionFilter, "boot_ok"]
    # Exact device id only: a prefix or substring search would scan the whole table.
    search_fields = ["=device__device_id"]
    date_hierarchy = "received_at"
    list_select_related = ["device"]
    # Counting every check on each page view is the slowest query of the page; skip it.
    show_full_result_count = False
    ordering = ["-received_at"]


@admin.register(HealthGroup)
class HealthGroupAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "ring", "version", "rollout_id", "stage"]
    list_filter = [RingFilter, VersionFilter]


@admin.register(HealthMinute)
class HealthMinuteAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The rollups the gates read, to check a figure against the raw checks of its minute."""

    list_display = ["minute", "group", "checks", "devices", "crash_free_rate", "boot_success_rate"]
    list_select_related = ["group"]
    date_hierarchy = "minute"
    show_full_result_count = False
    ordering = ["-minute", "group"]

    @admin.display(description="crash-free rate")
    def crash_free_rate(self, minute: HealthMinute) -> str:
        return f"{minute.crash_free_sum / minute.checks:.4f}" if minute.checks else "–"

    @admin.display(description="boot success rate")
    def boot_success_rate(self, minute: HealthMinute) -> str:
        return f"{minute.booted / minute.checks:.4f}" if minute.checks else "–"


@admin.register(HealthMinuteValue)
class HealthMinuteValueAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["minute", "group", "measure", "value", "count"]
    list_filter = ["measure"]
    list_select_related = ["group"]
    show_full_result_count = False
    ordering = ["-minute", "group", "measure", "value"]


@admin.register(HealthMinuteMetric)
class HealthMinuteMetricAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["minute", "group", "name", "total", "count"]
    list_select_related = ["group"]
    show_full_result_count = False
    ordering = ["-minute", "group", "name"]


@admin.register(DeviceCheckState)
class DeviceCheckStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["device", "group", "last_check_at"]
    list_select_related = ["device", "group"]
    search_fields = ["=device__device_id"]
    show_full_result_count = False
