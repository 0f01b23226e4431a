"""Filters of the rollout, evaluation and plan lists; one FilterSet serves the API, pages and tests."""

import django_filters
from django.db.models import Q, QuerySet

from rollouts.choices import RolloutStatus
from rollouts.gates import Action
from rollouts.models import Evaluation, Rollout, RolloutPlan
from saferoll.core.filters import UtcDateTimeFilter


class RolloutFilterSet(django_filters.FilterSet):
    # The public state: a status (created, paused, ...) or, for an active rollout, its ring's name.
    state = django_filters.CharFilter(method="filter_state", label="State (status or ring name)")
    status = django_filters.MultipleChoiceFilter(choices=RolloutStatus.choices)
    active = django_filters.BooleanFilter(method="filter_active", label="Not yet completed or rolled back")
    version = django_filters.CharFilter(field_name="release__version")
    plan = django_filters.CharFilter(field_name="plan__name")
    ring = django_filters.CharFilter(field_name="current_ring")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Rollout
        fields = ["state", "status", "active", "version", "plan", "ring", "created_after", "created_before"]

    def filter_state(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value in RolloutStatus.values:
            return queryset.filter(status=value)
        return queryset.filter(status=RolloutStatus.ACTIVE, current_ring=value)

    def filter_active(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        unfinished = Q(status__in=(RolloutStatus.CREATED, RolloutStatus.ACTIVE, RolloutStatus.PAUSED))
        if value is None:
            return queryset
        return queryset.filter(unfinished) if value else queryset.exclude(unfinished)


class EvaluationFilterSet(django_filters.FilterSet):
    rollout_id = django_filters.CharFilter(field_name="rollout__rollout_id")
    action = django_filters.MultipleChoiceFilter(choices=[(action.value, action.value) for action in Action])
    ring = django_filters.CharFilter()
    source = django_filters.CharFilter()
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Evaluation
        fields = ["rollout_id", "action", "ring", "source", "created_after", "created_before"]


class RolloutPlanFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    is_default = django_filters.BooleanFilter()

    class Meta:
        model = RolloutPlan
        fields = ["name", "is_default"]
