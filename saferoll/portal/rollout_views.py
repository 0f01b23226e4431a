"""The portal's rollout pages: detail (with its live fragment and health series), the actions,
new rollout, releases and incidents.

Every action goes through rollouts.services with actor=request.user after the permission check
of rollouts.permissions; a refusal is shown as a message and the page redirects back (PRG). What a
button says when it is disabled comes from the same rules the services apply
(lifecycle.transition_refusal, the emergency stop, the gate decision), so the page and the server agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from rollouts.choices import TERMINAL_STATUSES, IncidentStatus, RolloutStatus
from rollouts.fleet_release import current_for, current_releases, rollback_versions
from rollouts.gates import COMPARISON_GATES, Action, Decision, GateConfig, human_duration, is_custom_gate
from rollouts.models import Evaluation, Incident, Release, Rollout
from rollouts.permissions import can_act, can_override_gates, override_refusal
from rollouts.selectors import (
    rollout_deployment_summary,
    rollout_health_series,
    rollout_retries_waiting,
    rollout_ring_health,
    wave_progress,
)
from rollouts.services import incidents, lifecycle
from rollouts.services.lifecycle import EmergencyStopActive, emergency_stop_check
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import FleetState
from saferoll.portal.forms import IncidentOpenForm, IncidentResolveForm, RolloutActionForm, RolloutCreateForm
from saferoll.portal.plan_views import plan_previews
from saferoll.portal.templatetags.portal import (
    RATE_GATES,
    kpi_number,
    metric_tone,
    ms,
    pct,
    ring_label,
    ring_states,
)
from saferoll.portal.views import AuthenticatedHttpRequest, back, paginate, reader_required, refusal_message
from telemetry.health import RingHealth
from telemetry.selectors import SeriesPoint

# Chart ranges the page offers (minutes); SPEC §4 asks for 10–60.
SERIES_RANGES = (10, 30, 60)
SERIES_DEFAULT = 30
# The gates that judge health need the minimum sample (rollouts.gates: Gate.needs_sample); with too
# little data their values are the empty window's defaults and must not be shown as passing.
SAMPLE_GATES = {
    "crash_free_rate",
    "boot_success_rate",
    "median_latency_ms",
    "availability",
    "event_lag_ms",
    "dropped_events",
}


# --- what the detail page shows ----------------------------------------------------------------


@dataclass
class ActionButton:
    """One action button of the detail page, with the text of its confirmation dialog."""

    name: str
    label: str
    style: str  # primary, warning, danger
    icon: str
    confirm_title: str
    confirm_text: str
    reason: str = "optional"  # or "required"
    refusal: str | None = None  # why the button is disabled; None when it may be used now
    # Promote or resume past the gates' WAIT or PAUSE verdict (release managers, with a reason).
    override: bool = False

    @property
    def allowed(self) -> bool:
        return self.refusal is None

    @property
    def key(self) -> str:
        """Unique on the page: "promote" and "promote-override" each have their dialog."""
        return f"{self.name}-override" if self.override else self.name


def _load(rollout_id: str) -> Rollout:
    rollout = (
        Rollout.objects.select_related("release__previous_release", "plan", "created_by")
        .filter(rollout_id=rollout_id)
        .first()
    )
    if rollout is None:
        raise Http404(f"Rollout {rollout_id} not found.")
    return rollout


def _decision(rollout: Rollout) -> Decision | None:
    """A fresh judgement of the ring (stored nowhere), for the gates panel and the buttons."""
    if rollout.status not in (RolloutStatus.ACTIVE, RolloutStatus.PAUSED) or not rollout.current_ring:
        return None
    try:
        return lifecycle.rollout_evaluate(rollout=rollout)
    except ServiceRefused:
        return None


def _emergency_refusal(action: str) -> str | None:
    try:
        emergency_stop_check(action)
    except EmergencyStopActive as exc:
        return str(exc)
    return None


# The buttons offered in each status; the rest make no sense there (a finished rollout has none).
OFFERED_ACTIONS: dict[str, tuple[str, ...]] = {
    RolloutStatus.CREATED: ("start", "rollback"),
    RolloutStatus.ACTIVE: ("promote", "pause", "rollback"),
    RolloutStatus.PAUSED: ("resume", "promote", "rollback"),
    RolloutStatus.COMPLETED: ("rollback",),
}


def _describe_action(name: str, rollout: Rollout) -> ActionButton:
    version = rollout.release.version
    ring = ring_label(rollout.current_ring)
    if name == "start":
        first = ring_label(rollout.ring_names[0]) if rollout.ring_names else "the first ring"
        return ActionButton(
            name=name,
            label=f"Start in {first}",
            style="primary",
            icon="play",
            confirm_title=f"Start the rollout of {version}?",
            confirm_text=f"{version} is deployed to the devices of {first}. SafeRoll then watches their health.",
        )
    if name == "promote":
        next_ring = rollout.next_ring() if rollout.current_ring else None
        label = f"Promote to {ring_label(next_ring)}" if next_ring else "Complete rollout"
        move = (
            f"{version} goes from {ring} to {ring_label(next_ring)}, reaching more devices."
            if next_ring
            else f"{ring} is the last ring: the rollout of {version} is marked complete."
        )
        return ActionButton(
            name=name,
            label=label,
            style="primary",
            icon="forward",
            confirm_title=f"{label}?",
            confirm_text=f"{move} SafeRoll checks the SLO gates again before it moves.",
        )
    if name == "pause":
        return ActionButton(
            name=name,
            label="Pause",
            style="warning",
            icon="pause",
            confirm_title=f"Pause the rollout of {version}?",
            confirm_text=f"The rollout stays in {ring}: no further ring is deployed until someone resumes it. "
            "Devices already updating carry on.",
        )
    if name == "resume":
        return ActionButton(
            name=name,
            label="Resume",
            style="primary",
            icon="play",
            confirm_title=f"Resume the rollout of {version} in {ring}?",
            confirm_text=f"SafeRoll evaluates {ring} again first; the ring's bake time starts over.",
        )
    targets = rollback_versions(rollout)
    back_to = " / ".join(targets) or "the version each device ran before"
    return ActionButton(
        name=name,
        label=f"Roll back to {back_to}"
        if rollout.status == RolloutStatus.COMPLETED and targets
        else "Roll back",
        style="danger",
        icon="rollback",
        confirm_title=f"Roll back {version}?",
        confirm_text=f"Every device that received {version} returns to {back_to}; devices still waiting are "
        "cancelled. The rollout ends and cannot be resumed.",
        reason="required",
    )


def _refusal(name: str, rollout: Rollout, decision: Decision | None) -> str | None:
    """Why `name` cannot be done now, as the service would say it: the state machine first, then
    the emergency stop, then the gates (promote needs PROMOTE; resume is refused on PAUSE/ROLLBACK)."""
    refusal = lifecycle.transition_refusal(rollout, name)
    if refusal is None and name == "rollback":
        refusal = lifecycle.rollback_refusal(rollout)
    if refusal is None and name in ("start", "promote", "resume"):
        refusal = _emergency_refusal(f"{name} a rollout")
    if refusal is None and decision is not None:
        if name == "promote" and decision.action != Action.PROMOTE:
            refusal = f"Cannot promote: {decision.action.value} — {decision.reason}"
        if name == "resume" and decision.action in (Action.PAUSE, Action.ROLLBACK):
            refusal = f"Cannot resume: {decision.action.value} — {decision.reason}"
    return refusal


def _action_buttons(rollout: Rollout, user, decision: Decision | None) -> list[ActionButton]:
    """The buttons this user's role may use, each disabled with the reason when not possible now,
    then "Promote anyway" / "Resume anyway" where only the gates stand in the way and the user may
    override them."""
    buttons = []
    for name in OFFERED_ACTIONS.get(rollout.status, ()):
        if can_act(user, name):
            button = _describe_action(name, rollout)
            button.refusal = _refusal(name, rollout, decision)
            buttons.append(button)
    overrides = [
        _override_button(button, rollout, decision)
        for button in buttons
        if button.name in OVERRIDABLE
        and not button.allowed
        and _only_gates_refuse(button.name, rollout, decision)
    ]
    if overrides and can_override_gates(user):
        buttons.extend(overrides)
    return buttons


# The transitions a release manager may take past the gates' WAIT or PAUSE verdict.
OVERRIDABLE = tuple(lifecycle.OVERRIDES)


def _only_gates_refuse(name: str, rollout: Rollout, decision: Decision | None) -> bool:
    """Whether the gates' WAIT or PAUSE verdict is all that stops `name` (never ROLLBACK)."""
    if decision is None or decision.action == Action.ROLLBACK:
        return False
    return (
        lifecycle.transition_refusal(rollout, name) is None
        and _emergency_refusal(f"{name} a rollout") is None
    )


def _override_button(button: ActionButton, rollout: Rollout, decision: Decision | None) -> ActionButton:
    verdict = f"{decision.action.value}: {decision.reason}" if decision else ""
    verb = "Promote" if button.name == "promote" else "Resume"
    return ActionButton(
        name=button.name,
        label=f"{verb} anyway",
        style="warning",
        icon=button.icon,
        confirm_title=f"{verb} against the gates?",
        confirm_text=(
            f"The gates say {verdict} {button.confirm_text} Your reason is recorded as an OVERRIDE in the "
            "audit log with the evaluation you go past."
        ),
        reason="required",
        override=True,
    )


def _install_panel(rollout: Rollout, decision: Decision | None) -> dict[str, Any] | None:
    """The current ring's install progress and bake, from the judgement the page already made."""
    if decision is None or "install" not in decision.evaluation:
        return None
    install = decision.evaluation["install"]
    bake = decision.evaluation.get("bake") or {}
    share = install["share"]
    return {
        "ring": rollout.current_ring,
        "install": install,
        "percent": round(100 * share, 1) if share is not None else 100,
        "needed_percent": round(100 * install["min_share"], 1),
        "bake": bake,
        "bake_text": _bake_text(install, bake),
    }


def _bake_text(install: dict[str, Any], bake: dict[str, Any]) -> str:
    """ "baking, 42 s left", "bake starts when 90% run the release", "baked" or "no bake"."""
    minutes = bake.get("minutes", 0)
    if not minutes:
        return "No bake in this ring."
    if not install["met"]:
        return (
            f"A {human_duration(minutes * 60)} bake starts when {round(100 * install['min_share'], 1):g}% "
            "run the release."
        )
    remaining = bake.get("remaining_seconds", 0)
    if remaining <= 0:
        return f"Baked ({human_duration(minutes * 60)})."
    return f"Baking, {human_duration(remaining)} left of {human_duration(minutes * 60)}."


def _metric_card(
    key: str,
    title: str,
    value: float | None,
    threshold: float | None,
    operator: str,
    *,
    rate: bool,
    critical: float | None,
    judged: bool,
    detail: str = "",
    show: Callable[[Any], str] | None = None,
) -> dict[str, Any]:
    show = show or (pct if rate else ms)
    goal = (
        f"Goal {'≥' if operator == '>=' else '≤'} {show(threshold)}"
        if threshold is not None
        else "No goal set"
    )
    if value is None:
        return {
            "key": key,
            "title": title,
            "value": "—",
            "goal": goal,
            "tone": "neutral",
            "badge": "NO DATA",
            "detail": detail or "Nobody reported in the window.",
        }
    if threshold is None:
        return {
            "key": key,
            "title": title,
            "value": show(value),
            "goal": goal,
            "tone": "neutral",
            "badge": "NOT GATED",
            "detail": detail,
        }
    tone = metric_tone(value, threshold, operator, rate=rate)
    badge = {"pass": "PASSING", "warn": "WARNING", "fail": "FAILING"}[tone]
    is_critical = critical is not None and (value < critical if operator == ">=" else value > critical)
    if is_critical:
        badge = "CRITICAL"
    if not judged:
        tone, badge = "neutral", "TOO FEW DEVICES"
    return {
        "key": key,
        "title": title,
        "value": show(value),
        "goal": goal,
        "tone": tone,
        "badge": badge,
        "detail": detail,
    }


def _metric_cards(health: RingHealth | None, config: GateConfig) -> list[dict[str, Any]]:
    if health is None:
        health = RingHealth(ring="")
    reporting = health.total_devices
    empty = reporting == 0
    judged = reporting >= config.min_sample
    sample = (
        f"{reporting} device{'s' if reporting != 1 else ''} reporting (at least {config.min_sample} needed)"
    )
    cards = [
        _metric_card(
            "crash_free_rate",
            "Crash-free rate",
            None if empty else health.crash_free_rate,
            config.crash_free_min,
            ">=",
            rate=True,
            critical=config.crash_free_critical,
            judged=judged,
            detail=sample if not empty else "",
        ),
        _metric_card(
            "boot_success_rate",
            "Boot success",
            None if empty else health.boot_success_rate,
            config.boot_success_min,
            ">=",
            rate=True,
            critical=config.boot_success_critical,
            judged=judged,
            detail=sample if not empty else "",
        ),
        _metric_card(
            "median_latency_ms",
            "Median latency",
            None if empty else health.median_latency_ms,
            config.latency_max_ms,
            "<=",
            rate=False,
            critical=config.latency_critical_ms,
            judged=judged,
            detail=sample if not empty else "",
        ),
    ]
    expected = health.expected_devices
    cards.append(
        _metric_card(
            "reporting_rate",
            "Reporting rate",
            health.reporting_rate,
            config.reporting_rate_min,
            ">=",
            rate=True,
            critical=config.reporting_rate_critical,
            judged=bool(expected and expected >= config.min_sample),
            detail=f"{reporting} of {expected} expected devices reported"
            if expected
            else "No device has been running the release long enough to be expected to report.",
        )
    )
    cards.extend(_custom_metric_cards(health, config, judged=judged, detail=sample if not empty else ""))
    return cards


def _custom_metric_cards(
    health: RingHealth, config: GateConfig, *, judged: bool, detail: str
) -> list[dict[str, Any]]:
    """A card per custom KPI gate of the plan, beside the built-in figures; a metric nobody
    reported in the window reads NO DATA."""
    return [
        _metric_card(
            definition.gate_name,
            definition.title,
            health.metrics.get(definition.metric),
            definition.threshold,
            definition.operator,
            rate=False,
            critical=definition.critical_threshold,
            judged=judged,
            detail=detail if definition.metric in health.metrics else "No device reported it in the window.",
            show=kpi_number,
        )
        for definition in config.custom_gates
    ]


def _gates(decision: Decision | None, config: GateConfig) -> list[dict[str, Any]]:
    if decision is None:
        return []
    evaluation = decision.evaluation
    sample = evaluation.get("sample")
    if sample is not None:
        enough = sample["enough"]
    else:
        # Stored before evaluations said whether their sample sufficed: devices were all it counted.
        enough = (evaluation.get("health") or {}).get("total_devices", 0) >= config.min_sample
    gates = []
    for name, gate in (evaluation.get("gates") or {}).items():
        custom = is_custom_gate(name)
        # A custom KPI nobody reported is not judged, whatever the sample.
        judged = (
            enough or (name not in SAMPLE_GATES and not custom and name not in COMPARISON_GATES)
        ) and gate.get("judged", True)
        if not judged or gate.get("excused"):
            tone = "neutral"
        elif not gate.get("passed"):
            tone = "fail"
        elif (custom or name in RATE_GATES | {"median_latency_ms", "event_lag_ms"}) and gate.get(
            "threshold"
        ) is not None:
            tone = metric_tone(
                gate.get("value"),
                gate["threshold"],
                gate["operator"],
                rate=name in RATE_GATES and gate["operator"] == ">=",
            )
        else:
            tone = "pass"
        gates.append({"name": name, "gate": gate, "judged": judged, "tone": tone})
    return gates


def _ring_steps(rollout: Rollout, by_ring: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """The ring progress with each ring's device counts."""
    return [
        {**step, **by_ring.get(step["ring"], {"targeted": 0, "exposed": 0})} for step in ring_states(rollout)
    ]


def _finished_ring_health(rollout: Rollout, config: GateConfig) -> RingHealth | None:
    """The last ring's health once nothing is judged any more (the judged ring's comes with the
    decision); None before the start."""
    return rollout_ring_health(rollout, rollout.current_ring, config=config) if rollout.current_ring else None


def detail_context(request: HttpRequest, rollout: Rollout) -> dict[str, Any]:
    config = GateConfig.from_dict(rollout.gate_config)
    decision = _decision(rollout)
    health = decision.health if decision is not None else _finished_ring_health(rollout, config)
    blast = rollout_deployment_summary(rollout)
    events = rollout.events.order_by("-created_at", "-id")
    last_autopilot = (
        Evaluation.objects.filter(rollout=rollout, source="autopilot").order_by("-created_at", "-id").first()
    )
    return {
        "rollout": rollout,
        "config": config,
        "health": health,
        "decision": decision,
        "cards": _metric_cards(health, config),
        "gates": _gates(decision, config),
        "steps": _ring_steps(rollout, blast.by_ring),
        "blast": blast,
        # Where its devices go back to: the fleet's current release of their variant, as the rollback does.
        "rolls_back_to": rollback_versions(rollout),
        "waves": wave_progress(rollout, blast),
        "retries_waiting": rollout_retries_waiting(rollout) if rollout.retries else None,
        "events": events,
        "buttons": _action_buttons(rollout, request.user, decision),
        "progress": _install_panel(rollout, decision),
        "is_finished": rollout.status in TERMINAL_STATUSES,
        "last_autopilot": last_autopilot,
        "fleet_state": FleetState.load(),
        "series_ranges": SERIES_RANGES,
        "series_default": SERIES_DEFAULT,
    }


@require_GET
@reader_required
def rollout_detail(request: HttpRequest, rollout_id: str) -> HttpResponse:
    rollout = _load(rollout_id)
    return render(request, "rollouts/detail.html", detail_context(request, rollout))


@require_GET
@reader_required
def rollout_fragment(request: HttpRequest, rollout_id: str) -> HttpResponse:
    """The detail page's live parts, server-rendered, for the page to swap in when something changes."""
    rollout = _load(rollout_id)
    return render(request, "rollouts/partials/detail_live.html", detail_context(request, rollout))


@require_GET
@reader_required
def rollout_series(request: HttpRequest, rollout_id: str) -> JsonResponse:
    """Per-minute health of the devices the rollout deployed in its current ring, on its version."""
    rollout = _load(rollout_id)
    try:
        minutes = int(request.GET.get("minutes", SERIES_DEFAULT))
    except ValueError:
        minutes = SERIES_DEFAULT
    if minutes not in SERIES_RANGES:
        minutes = SERIES_DEFAULT
    config = GateConfig.from_dict(rollout.gate_config)
    points = []
    if rollout.current_ring:
        points = [
            _chart_point(point)
            for point in rollout_health_series(rollout, ring=rollout.current_ring, minutes=minutes)
        ]
    return JsonResponse(
        {
            "rollout_id": rollout.rollout_id,
            "ring": rollout.current_ring,
            "version": rollout.release.version,
            "minutes": minutes,
            "thresholds": {
                "crash_free_rate": config.crash_free_min,
                "boot_success_rate": config.boot_success_min,
                "median_latency_ms": config.latency_max_ms,
            },
            "kpis": [definition.goal() for definition in config.custom_gates],
            "points": points,
        }
    )


def _chart_point(point: SeriesPoint) -> dict[str, Any]:
    """The chart's point: the minute as a Unix timestamp `t` instead of a datetime."""
    values = point.to_dict()
    del values["minute"]
    return {**values, "t": int(point.minute.timestamp())}


# --- actions -----------------------------------------------------------------------------------


_DONE = {
    "start": "Rollout started in {ring}.",
    "promote": "Promoted: now in {ring}.",
    "pause": "Rollout paused in {ring}.",
    "resume": "Rollout resumed in {ring}.",
    "rollback": "Rollout rolled back.",
}


@require_http_methods(["GET", "POST"])
@reader_required
def rollout_action(request: AuthenticatedHttpRequest, rollout_id: str, action: str) -> HttpResponse:
    """GET: a confirmation page (the no-script fallback of the dialog). POST: do it."""
    if action not in lifecycle.TRANSITIONS:
        raise Http404("No such rollout action.")
    if not can_act(request.user, action):
        raise PermissionDenied(
            f"Your role does not allow you to {action.replace('rollback', 'roll back')} rollouts."
        )
    rollout = _load(rollout_id)
    detail = reverse("portal:rollout-detail", args=[rollout.rollout_id])
    if request.method == "GET":
        decision = _decision(rollout) if action in ("promote", "resume") else None
        wanted = request.GET.get("override") == "1"
        button = next(
            (
                b
                for b in _action_buttons(rollout, request.user, decision)
                if b.name == action and b.override == wanted
            ),
            None,
        )
        if button is None:
            messages.error(
                request, lifecycle.transition_refusal(rollout, action) or "That action is not available."
            )
            return redirect(detail)
        return render(request, "rollouts/confirm.html", {"rollout": rollout, "button": button})

    override = request.POST.get("override") == "1" and action in OVERRIDABLE
    if override and not can_override_gates(request.user):
        raise PermissionDenied(override_refusal(request.user))
    form = RolloutActionForm(request.POST, reason_required=action == "rollback" or override)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(
                    request, f"Not done: {error}" if action != "rollback" else f"Rollback not done: {error}"
                )
        return redirect(detail)
    # Act on the state the person saw: the service refuses a decision taken on a stale page.
    if form.cleaned_data["expected_status"]:
        rollout.status = form.cleaned_data["expected_status"]
        rollout.current_ring = form.cleaned_data["expected_ring"] or None
    reason = form.cleaned_data["reason"]
    try:
        if override:
            lifecycle.OVERRIDES[action](rollout=rollout, actor=request.user, reason=reason, override=True)
        else:
            lifecycle.TRANSITIONS[action](rollout=rollout, actor=request.user, reason=reason)
    except ServiceRefused as refused:
        messages.error(request, refusal_message(refused))
    else:
        rollout.refresh_from_db()
        messages.success(request, _DONE[action].format(ring=ring_label(rollout.current_ring)))
    return redirect(detail)


# --- new rollout -------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@reader_required
def rollout_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    if not can_act(request.user, "create"):
        raise PermissionDenied("Your role does not allow you to create rollouts.")
    form = RolloutCreateForm(request.POST or None, initial={"plan": request.GET.get("plan")})
    if request.method == "POST" and form.is_valid():
        try:
            rollout = lifecycle.rollout_create(
                release=form.cleaned_data["release"], plan=form.cleaned_data["plan"], actor=request.user
            )
        except ServiceRefused as refused:
            form.add_error("plan", refusal_message(refused))
        else:
            messages.success(
                request, f"Rollout of {rollout.release.version} created. Start it when you are ready."
            )
            return redirect("portal:rollout-detail", rollout.rollout_id)
    context = {"form": form, "has_releases": Release.objects.exists(), **plan_previews(form["plan"].value())}
    return render(request, "rollouts/new.html", context)


# --- releases ----------------------------------------------------------------------------------


@require_GET
@reader_required
def release_list(request: HttpRequest) -> HttpResponse:
    releases = (
        Release.objects.select_related("previous_release")
        .prefetch_related(
            "compatible_variants", Prefetch("rollouts", queryset=Rollout.objects.order_by("-created_at"))
        )
        .annotate(rollout_count=Count("rollouts"))
        .order_by("-created_at")
    )
    search = request.GET.get("search", "").strip()
    if search:
        releases = releases.filter(version__icontains=search)
    page = paginate(request, releases)
    currents = current_releases()
    for release in page:
        release.current_for = current_for(release, currents)
    return render(
        request,
        "rollouts/releases.html",
        {
            "page": page,
            "search": search,
            "can_add": request.user.has_perm("rollouts.add_release"),
            "can_create": can_act(request.user, "create"),
        },
    )


# --- incidents ---------------------------------------------------------------------------------


@require_GET
@reader_required
def incident_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", IncidentStatus.OPEN)
    incidents = Incident.objects.select_related("release", "opened_by", "resolved_by")
    if status in IncidentStatus.values:
        incidents = incidents.filter(status=status)
    counts = dict(Incident.objects.order_by().values_list("status").annotate(n=Count("id")))
    return render(
        request,
        "rollouts/incidents.html",
        {
            "page": paginate(request, incidents),
            "status": status,
            "counts": counts,
            "form": IncidentOpenForm(),
            "can_open": request.user.has_perm("rollouts.add_incident"),
            "can_resolve": request.user.has_perm("rollouts.change_incident"),
            "open_sev1": Incident.objects.filter(Q(status=IncidentStatus.OPEN) & Q(severity="sev1")).count(),
        },
    )


@require_POST
@reader_required
def incident_open(request: AuthenticatedHttpRequest) -> HttpResponse:
    if not request.user.has_perm("rollouts.add_incident"):
        raise PermissionDenied("Your role does not allow you to open incidents.")
    form = IncidentOpenForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            for error in errors:
                messages.error(request, f"{field.capitalize()}: {error}")
        return redirect("portal:incident-list")
    try:
        incident = incidents.incident_open(actor=request.user, **form.cleaned_data)
    except ServiceRefused as refused:
        messages.error(request, refusal_message(refused))
    else:
        messages.success(request, f"Incident #{incident.pk} opened.")
    return redirect("portal:incident-list")


@require_POST
@reader_required
def incident_resolve(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("rollouts.change_incident"):
        raise PermissionDenied("Your role does not allow you to resolve incidents.")
    incident = get_object_or_404(Incident, pk=pk)
    form = IncidentResolveForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        incidents.incident_resolve(incident=incident, actor=request.user, reason=reason)
    except ServiceRefused as refused:
        messages.error(request, refusal_message(refused))
    else:
        messages.success(request, f"Incident #{incident.pk} resolved.")
    return back(request, reverse("portal:incident-list"))
