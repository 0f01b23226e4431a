"""One FilterSet per list, shared by the API and the portal's pages."""

import django_filters

from devices.choices import CohortKind, DeviceStatus
from devices.models import Cohort, Device


class DeviceFilterSet(django_filters.FilterSet):
    ring = django_filters.CharFilter(field_name="ring")
    status = django_filters.ChoiceFilter(choices=DeviceStatus.choices)
    variant = django_filters.CharFilter(field_name="variant__name", label="Hardware variant name")
    site = django_filters.CharFilter(field_name="site")
    region = django_filters.CharFilter(field_name="region")
    version = django_filters.CharFilter(field_name="app_version", label="App version")
    cohort = django_filters.CharFilter(field_name="cohorts__name", label="Cohort name", distinct=True)
    search = django_filters.CharFilter(
        field_name="device_id", lookup_expr="icontains", label="Part of the device id"
    )

    class Meta:
        model = Device
        fields = ["ring", "status", "variant", "site", "region", "version", "cohort", "search"]


class CohortFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=CohortKind.choices)
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Part of the name")

    class Meta:
        model = Cohort
        fields = ["kind", "search"]
