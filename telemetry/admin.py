"""Admin of raw health checks: read-only, built for a table with millions of rows."""

from django.conf import settings
from django.contrib import admin

from devices.models import Device
from saferoll.core.admin import ReadOnlyAdminMixin
from telemetry.models import HealthCheck


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
