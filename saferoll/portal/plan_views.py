"""The portal's rollout plans: the list, one plan's page, and the summary the new-rollout form
shows of the plan chosen (stages in order with region, bake and install share; the effective gate
thresholds; waves, retries and maintenance windows), so nothing is a surprise once it starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from rollouts import maintenance
from rollouts.gates import CustomGateDefinition, GateConfig
from rollouts.models import RolloutPlan
from rollouts.permissions import can_act
from rollouts.services.plans import whatif_fleet, whatif_plan
from rollouts.whatif import replay
from rollouts.whatif.report import HEADERS, row_cells
from saferoll.portal.forms import WhatIfForm
from saferoll.portal.templatetags.portal import gate_label, pct
from saferoll.portal.views import reader_required

# The installed share a stage waits for when it names none (the stage key min_installed_share).
DEFAULT_MIN_INSTALLED_SHARE = 0.9
GATE_SETTING_LABELS = {
    "crash_free_min": "Crash-free rate, at least",
    "crash_free_critical": "Crash-free rate, critical below",
    "boot_success_min": "Boot success, at least",
    "boot_success_critical": "Boot success, critical below",
    "latency_max_ms": "Median latency, at most",
    "latency_critical_ms": "Median latency, critical above",
    "window_minutes": "Judged over the last",
    "min_sample": "Devices reporting before judging",
    "reporting_rate_min": "Reporting rate, at least",
    "reporting_rate_critical": "Reporting rate, critical below",
    "reporting_grace_seconds": "Time to first report",
    "availability_min": "Availability, at least",
    "event_lag_max_ms": "Event lag, at most",
    "dropped_events_max": "Dropped events per check, at most",
    "deployment_failure_max": "Failed deployments, at most",
    "block_on_sev1": "An open Sev1 incident holds the rollout",
    "consecutive_failures_to_pause": "Failing evaluations before pausing",
    "score_weights": "Health score weights",
}


@dataclass(frozen=True)
class StageRow:
    number: int
    name: str
    region: str
    targets: str
    bake: str
    auto_advance: bool
    min_installed_share: str
    description: str


@dataclass(frozen=True)
class SettingRow:
    label: str
    value: str
    # Set by the plan, not the default.
    from_plan: bool = False


@dataclass(frozen=True)
class WindowRow:
    scope: str
    hours: str
    time_zone: str
    weekdays: str


@dataclass
class PlanSummary:
    plan: RolloutPlan
    stages: list[StageRow]
    gates: list[SettingRow]
    waves: list[SettingRow]
    retries: list[SettingRow]
    windows: list[WindowRow]
    utc_window: str
    problems: list[str] = field(default_factory=list)


def plan_summary(plan: RolloutPlan) -> PlanSummary:
    """What the plan does, in words and numbers a person reads before starting a rollout with it."""
    stages = plan.stages if isinstance(plan.stages, list) else []
    summary = PlanSummary(
        plan=plan,
        stages=[_stage_row(number, stage) for number, stage in enumerate(stages, start=1)],
        gates=[],
        waves=_setting_rows(plan.waves),
        retries=_setting_rows(plan.retries),
        windows=[_window_row(window) for window in plan.maintenance_windows or []],
        utc_window=_utc_window(plan),
    )
    try:
        summary.gates = _gate_rows(plan.gate_config or {})
    except ValueError as broken:
        # A plan stored by hand (the admin, the shell) may not parse: say so instead of failing.
        summary.problems.append(f"Its gate settings do not hold together: {broken}")
    return summary


def _stage_row(number: int, stage: dict[str, Any]) -> StageRow:
    if stage.get("cohort"):
        targets = f"Cohort {stage['cohort']}"
    else:
        rings = stage.get("rings") or [stage["ring"]]
        targets = ("Ring " if len(rings) == 1 else "Rings ") + ", ".join(rings)
    return StageRow(
        number=number,
        name=stage["ring"],
        region=stage.get("region") or "All regions",
        targets=targets,
        bake=minutes_text(stage.get("bake_minutes", 0)),
        auto_advance=bool(stage.get("auto_advance")),
        min_installed_share=pct(stage.get("min_installed_share", DEFAULT_MIN_INSTALLED_SHARE), 0),
        description=stage.get("description", ""),
    )


def minutes_text(minutes: float) -> str:
    """90 → "1 h 30 min", 1440 → "1 d", 0 → "None"."""
    if not minutes:
        return "None"
    whole = round(minutes)
    days, rest = divmod(whole, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min" if mins else ""]
    return " ".join(part for part in parts if part) or f"{minutes:g} min"


def _gate_rows(gate_config: dict[str, Any]) -> list[SettingRow]:
    config = GateConfig.from_dict(gate_config)
    effective = config.to_dict()
    del effective["custom_gates"]
    return [
        SettingRow(
            label=GATE_SETTING_LABELS.get(key, key.replace("_", " ").capitalize()),
            value=_gate_value(key, value),
            from_plan=key in gate_config,
        )
        for key, value in effective.items()
    ] + [_custom_gate_row(definition) for definition in config.custom_gates]


def _custom_gate_row(definition: CustomGateDefinition) -> SettingRow:
    """ "Disk free (disk_free_pct)": "≥ 20; critical below 5, rolls back; compared with the baseline"."""
    words = [f"{'≥' if definition.operator == '>=' else '≤'} {definition.threshold:g}"]
    if definition.critical_threshold is not None:
        side = "below" if definition.operator == ">=" else "above"
        pauses = "rolls back" if definition.rolls_back else "pauses"
        words.append(f"critical {side} {definition.critical_threshold:g}, {pauses}")
    if definition.baseline:
        words.append(f"compared with the baseline (at most {definition.baseline_ratio_max:g}× as bad)")
    label = f"{definition.title} ({definition.metric})" if definition.label else definition.title
    return SettingRow(label=f"KPI: {label}", value="; ".join(words), from_plan=True)


def _gate_value(key: str, value: Any) -> str:
    if key == "score_weights":
        return _weights_text(value)
    if value is None:
        return "Off"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if key in GateConfig._RATES:
        return pct(value, 1)
    if key.endswith("_ms"):
        return f"{value:g} ms"
    if key.endswith("_minutes"):
        return minutes_text(value)
    if key.endswith("_seconds"):
        return f"{value:g} s"
    return f"{value:g}"


def _weights_text(weights: dict[str, float]) -> str:
    """{"crash_free_rate": 5} → "Crash-free rate 5; the other gates their default"."""
    if not weights:
        return "Defaults"
    named = ", ".join(f"{gate_label(name)} {weight:g}" for name, weight in sorted(weights.items()))
    return f"{named}; the other gates their default"


def _setting_rows(settings: Any) -> list[SettingRow]:
    """A plan's waves or retries as label and value, whatever keys they hold."""
    if not isinstance(settings, dict):
        return []
    return [
        SettingRow(label=key.replace("_", " ").capitalize(), value=_plain(value), from_plan=True)
        for key, value in settings.items()
    ]


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list):
        return ", ".join(_plain(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _window_row(window: dict[str, Any]) -> WindowRow:
    scope = maintenance.window_scope(window)
    start, end = window.get("start", "?"), window.get("end", "?")
    weekdays = window.get("weekdays")
    return WindowRow(
        scope="Whole fleet" if scope == "fleet" else f"{scope.capitalize()} {window[scope]}",
        hours=f"{start}–{end}" + (" (overnight)" if end < start else ""),
        time_zone=window.get("time_zone", ""),
        weekdays=", ".join(day.capitalize() for day in weekdays) if weekdays else "Every day",
    )


def _utc_window(plan: RolloutPlan) -> str:
    if plan.activation_window_start is None or plan.activation_window_end is None:
        return "Any time"
    return f"{plan.activation_window_start:%H:%M}–{plan.activation_window_end:%H:%M} UTC"


@require_GET
@reader_required
def plan_list(request: HttpRequest) -> HttpResponse:
    plans = RolloutPlan.objects.order_by("-is_default", "name")
    return render(
        request,
        "rollouts/plans.html",
        {"summaries": [plan_summary(plan) for plan in plans], "can_create": can_act(request.user, "create")},
    )


@require_GET
@reader_required
def plan_detail(request: HttpRequest, name: str) -> HttpResponse:
    plan = get_object_or_404(RolloutPlan, name=name)
    return render(
        request,
        "rollouts/plan_detail.html",
        {"summary": plan_summary(plan), "can_create": can_act(request.user, "create")},
    )


@require_GET
@reader_required
def plan_whatif(request: HttpRequest, name: str) -> HttpResponse:
    """What would this plan do? The form, and once submitted the replay's table (rollouts.whatif),
    in the request itself: the form's bounds keep it to seconds."""
    plan = get_object_or_404(RolloutPlan, name=name)
    submitted = any(name in request.GET for name in WhatIfForm.base_fields)
    # A link that names only some of the fields (?runs=20) takes the form's defaults for the rest.
    defaults = {name: field.initial for name, field in WhatIfForm.base_fields.items()}
    form = WhatIfForm({**defaults, **request.GET.dict()} if submitted else None)
    context: dict[str, Any] = {"summary": plan_summary(plan), "form": form, "headers": HEADERS}
    if submitted and form.is_valid():
        data = form.cleaned_data
        try:
            report = replay(
                whatif_plan(plan),
                runs=data["runs"],
                seed=data["seed"],
                fleet=whatif_fleet(data["fleet"]),
                outside_events=data["outside_events"],
            )
        except ValueError as broken:
            form.add_error(None, f"This plan cannot be replayed: {broken}")
        else:
            context["report"] = report
            context["rows"] = [row_cells(row) for row in report.rows()]
    return render(request, "rollouts/plan_whatif.html", context)


def plan_previews(chosen: Any) -> dict[str, Any]:
    """The new-rollout form's summaries of every plan, and which one to show first: the plan
    chosen (its id, as the form's value), else the default plan."""
    summaries = [plan_summary(plan) for plan in RolloutPlan.objects.order_by("-is_default", "name")]
    chosen_id = str(chosen or "")
    shown = next((s for s in summaries if str(s.plan.pk) == chosen_id), None)
    shown = shown or next((s for s in summaries if s.plan.is_default), None)
    return {"plan_summaries": summaries, "shown_plan": shown.plan.pk if shown else None}
