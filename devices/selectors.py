"""Reads of devices and cohorts that are more than a one-line filter."""

from typing import TYPE_CHECKING, TypedDict

from django.db.models import Count, Prefetch, QuerySet

from devices.models import Cohort, Device

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class CohortCounts(TypedDict):
    device_count: int


def device_detail() -> QuerySet[Device]:
    """Devices with what their detail shows: variant, cohort names."""
    return Device.objects.select_related("variant").prefetch_related(
        Prefetch("cohorts", queryset=Cohort.objects.only("id", "name"))
    )


def cohort_list() -> "QuerySet[WithAnnotations[Cohort, CohortCounts]]":
    return Cohort.objects.annotate(device_count=Count("memberships"))


def cohort_member_ids(cohort: Cohort) -> list[str]:
    return list(
        Device.objects.filter(memberships__cohort=cohort)
        .order_by("device_id")
        .values_list("device_id", flat=True)
    )
