"""The portal's device pages: the filtered device list, one device's detail, and cohorts."""

import datetime as dt

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from devices import selectors
from devices.choices import DeviceStatus
from devices.filtersets import CohortFilterSet, DeviceFilterSet
from devices.models import Device, HardwareVariant
from rollouts import selectors as rollout_selectors
from rollouts.models import DeviceDeployment
from saferoll.portal.views import paginate, reader_required
from telemetry.selectors import device_health, device_recent_checks

# The device page's KPIs cover the same window as the gates' default (000 §6.2).
KPI_WINDOW_MINUTES = 5
RECENT_CHECKS = 20
# Filters of the device list that the page offers (the FilterSet has more, usable from the URL).
LIST_FILTERS = ("ring", "status", "version", "variant", "search", "cohort")


@require_GET
@reader_required
def device_list(request: HttpRequest) -> HttpResponse:
    filterset = DeviceFilterSet(request.GET, queryset=rollout_selectors.device_list().order_by("device_id"))
    page = paginate(request, filterset.qs)
    rings = list(settings.SAFEROLL_RING_SHARES)
    rings += sorted(set(Device.objects.order_by().values_list("ring", flat=True).distinct()) - set(rings))
    return render(
        request,
        "devices/list.html",
        {
            "page": page,
            "values": {key: request.GET.get(key, "") for key in LIST_FILTERS},
            "filtered": any(request.GET.get(key) for key in LIST_FILTERS),
            "errors": filterset.errors if not filterset.is_valid() else None,
            "rings": rings,
            "statuses": DeviceStatus.choices,
            "versions": Device.objects.order_by("app_version")
            .values_list("app_version", flat=True)
            .distinct(),
            "variants": HardwareVariant.objects.order_by("name").values_list("name", flat=True),
            "now": timezone.now(),
            "offline_after": settings.SAFEROLL_OFFLINE_AFTER_SECONDS,
        },
    )


@require_GET
@reader_required
def device_detail(request: HttpRequest, device_id: str) -> HttpResponse:
    device = get_object_or_404(selectors.device_detail(), device_id=device_id)
    deployments = (
        DeviceDeployment.objects.filter(device=device)
        .select_related("rollout__release")
        .order_by("-created_at", "-id")
    )
    now = timezone.now()
    kpis = device_health(device, window_minutes=KPI_WINDOW_MINUTES, now=now)
    heartbeat_age = (now - device.last_heartbeat).total_seconds() if device.last_heartbeat else None
    return render(
        request,
        "devices/detail.html",
        {
            "device": device,
            "deployments": deployments,
            "now": now,
            "kpis": kpis,
            "recent_checks": device_recent_checks(device, limit=RECENT_CHECKS),
            "heartbeat_stale": heartbeat_age is None
            or heartbeat_age > settings.SAFEROLL_OFFLINE_AFTER_SECONDS,
            "kpi_window": KPI_WINDOW_MINUTES,
            "window_start": now - dt.timedelta(minutes=KPI_WINDOW_MINUTES),
        },
    )


@require_GET
@reader_required
def cohort_list(request: HttpRequest) -> HttpResponse:
    filterset = CohortFilterSet(request.GET, queryset=selectors.cohort_list().order_by("name"))
    return render(
        request,
        "devices/cohorts.html",
        {
            "page": paginate(request, filterset.qs),
            "values": {key: request.GET.get(key, "") for key in ("kind", "search")},
            "kinds": filterset.form.fields["kind"].choices,
            "can_edit": request.user.has_perm("devices.change_cohort"),
        },
    )
