"""Forms of the portal's rollout, release and incident pages: input parsing only, no rules."""

from django import forms

from rollouts.choices import IncidentSeverity, RolloutStatus
from rollouts.models import Release, RolloutPlan

REASON_MAX_LENGTH = 1000


class RolloutCreateForm(forms.Form):
    release = forms.ModelChoiceField(
        queryset=Release.objects.order_by("-created_at"),
        empty_label="Choose a release…",
        help_text="The version to roll out.",
    )
    plan = forms.ModelChoiceField(
        queryset=RolloutPlan.objects.order_by("-is_default", "name"),
        required=False,
        empty_label="The default plan",
        help_text="Stages and SLO gates; they are frozen into the rollout when it is created.",
    )


class RolloutActionForm(forms.Form):
    """A rollout command from the portal. `expected_status` and `expected_ring` are the state the
    person saw when deciding; the service refuses when the rollout has moved on meanwhile."""

    reason = forms.CharField(required=False, max_length=REASON_MAX_LENGTH, strip=True)
    expected_status = forms.ChoiceField(choices=RolloutStatus.choices, required=False)
    expected_ring = forms.CharField(required=False, max_length=20)

    def __init__(self, *args, reason_required: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.reason_required = reason_required

    def clean_reason(self) -> str:
        reason = self.cleaned_data.get("reason", "")
        if self.reason_required and not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


class IncidentOpenForm(forms.Form):
    severity = forms.ChoiceField(choices=IncidentSeverity.choices, initial=IncidentSeverity.SEV2)
    title = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    release = forms.ModelChoiceField(
        queryset=Release.objects.order_by("-created_at"),
        required=False,
        empty_label="No release",
        help_text="An open Sev1 linked to a release pauses its rollouts.",
    )


class IncidentResolveForm(forms.Form):
    reason = forms.CharField(required=False, max_length=REASON_MAX_LENGTH, strip=True)


class WhatIfForm(forms.Form):
    """The what-if replay of a plan page. Bounded so the page answers within a web request: the cost
    grows with the runs and the plan's bakes, not with the fleet (modelled as aggregates)."""

    runs = forms.IntegerField(
        min_value=1, max_value=20, initial=10, help_text="Simulated rollouts, at most 20 here."
    )
    fleet = forms.IntegerField(
        min_value=100, max_value=1_000_000, initial=100_000, help_text="Devices in the simulated fleet."
    )
    outside_events = forms.FloatField(
        min_value=0,
        max_value=1,
        initial=0.3,
        label="Outside events",
        help_text="Share of runs with a site network outage or a fleet-wide latency spike (0–1).",
    )
    seed = forms.IntegerField(min_value=0, initial=1, help_text="The same seed gives the same table.")
