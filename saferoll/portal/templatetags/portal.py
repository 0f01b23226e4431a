"""Presentation helpers of the portal's templates: formats, labels, tones and the fleet banner.

Nothing here decides anything: the services and the gate engine decide, these only say how a
value looks (a percentage, a ring's label, which colour a state or a gate is drawn in).
"""

import json
import re
from typing import Any

from django import template
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from rollouts.choices import RolloutStatus
from rollouts.gates import COMPARISON_GATES, CUSTOM_GATE_PREFIX, is_custom_gate
from rollouts.permissions import can_act
from saferoll.core import roles
from saferoll.core.models import Alert, FleetState

register = template.Library()

# How close to its threshold a passing metric turns to WARNING (000 §7.4: "within 5%"). Measured on
# the metric's budget: 1 − threshold for a rate (a 99 % goal leaves a 1 % budget for failures), the
# threshold itself for a ceiling such as latency (500 ms → warn from 475 ms).
WARNING_SHARE = 0.05

GATE_LABELS = {
    "crash_free_rate": "Crash-free rate",
    "boot_success_rate": "Boot success rate",
    "median_latency_ms": "Median latency",
    "reporting_rate": "Reporting rate",
    "availability": "Availability",
    "event_lag_ms": "Event lag",
    "dropped_events": "Dropped events",
    "deployment_failure_rate": "Deployment failure rate",
    "sev1_incidents": "Open Sev1 incidents",
    "crash_rate_vs_baseline": "Crash rate against the previous release",
    "boot_failure_rate_vs_baseline": "Boot failures against the previous release",
    "latency_vs_baseline": "Latency against the previous release",
    "silent_share_vs_baseline": "Silent devices against the previous release",
}
# Gates whose value is a share between 0 and 1.
RATE_GATES = {
    "crash_free_rate",
    "boot_success_rate",
    "reporting_rate",
    "availability",
    "deployment_failure_rate",
}

# Colour family of each timeline action (000 §7.7): blue moves forward, amber pauses, red rolls back.
ACTION_TONES = {
    "CREATED": "neutral",
    "START": "active",
    "PROMOTE": "active",
    "AUTO_PROMOTE": "active",
    "RESUME": "active",
    "COMPLETED": "pass",
    "PAUSE": "warn",
    "AUTO_PAUSE": "warn",
    "ROLLBACK": "fail",
    "AUTO_ROLLBACK": "fail",
    # A person went past the gates: shown like a warning, so it stands out in the timeline.
    "OVERRIDE": "warn",
    "EMERGENCY_STOP": "fail",
    "EMERGENCY_STOP_LIFTED": "pass",
}
DECISION_TONES = {"PROMOTE": "pass", "WAIT": "neutral", "PAUSE": "warn", "ROLLBACK": "fail"}
DECISION_SUMMARY = {
    "PROMOTE": "Safe to promote",
    "WAIT": "Waiting for enough data",
    "PAUSE": "Hold: gates failing but not critical",
    "ROLLBACK": "Critical: roll back",
}


# --- formats -----------------------------------------------------------------------------------


@register.filter
def pct(value: Any, digits: int = 1) -> str:
    """0.9921 → "99.2%"; None → "—"."""
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value) * 100:.{int(digits)}f}%"
    except (TypeError, ValueError):
        return "—"


@register.filter
def ms(value: Any) -> str:
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value):,.0f} ms"
    except (TypeError, ValueError):
        return "—"


@register.filter
def kpi_number(value: Any) -> str:
    """A custom KPI has no known unit: 61.2345 → "61.23", 0.004 → "0.004", 1200 → "1,200"."""
    if value is None or value == "":
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    if number != 0 and abs(number) < 0.01:
        return f"{number:.2g}"
    return f"{number:,.2f}".rstrip("0").rstrip(".")


@register.filter
def gate_value(value: Any, name: str) -> str:
    """A gate's value or threshold shown the way its unit reads."""
    if value is None:
        return "—"
    if is_custom_gate(name):
        return kpi_number(value)
    if name in RATE_GATES:
        return pct(value)
    if name in COMPARISON_GATES:
        # The ring's figure as a multiple of the previous release's.
        return f"{float(value):.2f}×"
    if name.endswith("_ms"):
        return ms(value)
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def gate_current(gate: dict[str, Any], name: str) -> str:
    """A gate's current value with the decimals it takes not to read as its goal: a failing
    98.96 % is shown as such, not as "99.0 %" beside "Goal ≥ 99.0 %"."""
    value, threshold = gate.get("value"), gate.get("threshold")
    if name in RATE_GATES and value is not None and threshold is not None and value != threshold:
        for digits in (1, 2, 3):
            if pct(value, digits) != pct(threshold, digits):
                return pct(value, digits)
    return gate_value(value, name)


@register.filter
def comparison_text(gate: dict[str, Any], name: str) -> str:
    """ "0.60% on the release, 0.30% on the previous release, p < 0.001" for a comparison gate."""
    show = ms if name.startswith("latency") else (lambda value: pct(value, 2))
    p_value = gate.get("p_value", 1.0)
    p_text = "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"
    significant = "significant" if p_value < gate.get("alpha", 0) else "not significant"
    return (
        f"{show(gate.get('ring'))} on the release, {show(gate.get('baseline'))} on the previous release "
        f"({p_text}, {significant})"
    )


@register.filter
def gate_label(name: str) -> str:
    if is_custom_gate(name):
        name = name.removeprefix(CUSTOM_GATE_PREFIX)
    return GATE_LABELS.get(name, name.replace("_", " ").capitalize())


@register.filter
def gate_title(gate: dict[str, Any], name: str) -> str:
    """What a gate of an evaluation is called: a custom KPI gate carries its plan's label."""
    return (gate.get("label") if isinstance(gate, dict) else None) or gate_label(name)


@register.filter
def operator_text(operator: str) -> str:
    return {">=": "≥", "<=": "≤", ">": ">", "<": "<"}.get(operator, operator)


@register.filter
def ring_label(ring: str | None) -> str:
    """pilot → "Pilot", ring_25 → "Ring 25%"; other names as they are."""
    if not ring:
        return "—"
    match = re.fullmatch(r"ring_(\d+)", ring)
    if match:
        return f"Ring {match.group(1)}%"
    return ring.replace("_", " ").capitalize()


@register.filter
def state_label(rollout) -> str:
    if rollout.status == RolloutStatus.ACTIVE:
        return ring_label(rollout.current_ring)
    if rollout.status == RolloutStatus.PAUSED:
        return f"Paused in {ring_label(rollout.current_ring)}"
    return rollout.get_status_display()


@register.filter
def state_tone(rollout) -> str:
    return {
        RolloutStatus.CREATED: "neutral",
        RolloutStatus.ACTIVE: "active",
        RolloutStatus.PAUSED: "warn",
        RolloutStatus.COMPLETED: "pass",
        RolloutStatus.ROLLED_BACK: "fail",
    }.get(rollout.status, "neutral")


@register.filter
def ring_states(rollout) -> list[dict[str, str]]:
    """Each ring of a rollout with how the progress bar draws it: done ✓, active (pulsing),
    paused, failed ✕ (the ring a rollback happened in) or upcoming."""
    rings = rollout.ring_names
    current = rings.index(rollout.current_ring) if rollout.current_ring in rings else -1
    steps = []
    for index, ring in enumerate(rings):
        if rollout.status == RolloutStatus.COMPLETED or index < current:
            state = "done"
        elif index > current or rollout.status == RolloutStatus.CREATED:
            state = "upcoming"
        elif rollout.status == RolloutStatus.ACTIVE:
            state = "active"
        elif rollout.status == RolloutStatus.PAUSED:
            state = "paused"
        else:
            state = "failed"
        steps.append({"ring": ring, "label": ring_label(ring), "state": state})
    return steps


@register.filter
def action_tone(action: str) -> str:
    if action.endswith("_REFUSED"):
        return "neutral"
    return ACTION_TONES.get(action, "neutral")


@register.filter
def action_label(action: str) -> str:
    """AUTO_ROLLBACK → "Auto-rollback", PROMOTE_REFUSED → "Promote refused"."""
    text = action.replace("AUTO_", "AUTO-").replace("_", " ").lower()
    return text[:1].upper() + text[1:]


@register.filter
def decision_tone(action: str) -> str:
    return DECISION_TONES.get(action, "neutral")


@register.filter
def decision_summary(decision: Any) -> str:
    """The verdict in a few words. A WAIT says what it waits for: the release to install, the bake
    to run out, or enough devices to report."""
    action = decision.action.value
    if action == "WAIT":
        evaluation = decision.evaluation or {}
        if not (evaluation.get("install") or {}).get("met", True):
            return "Waiting for the release to install"
        if (evaluation.get("bake") or {}).get("remaining_seconds", 0) > 0 and decision.reason.startswith(
            "Baking"
        ):
            return "Baking"
    return DECISION_SUMMARY.get(action, action)


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, cls=DjangoJSONEncoder)


@register.filter
def isotime(value) -> str:
    return value.isoformat() if value else ""


@register.filter
def get_item(mapping: dict, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


# --- judgement colours -------------------------------------------------------------------------


def metric_tone(value: float | None, threshold: float, operator: str, *, rate: bool) -> str:
    """PASSING ("pass"), WARNING ("warn": passing but within 5 % of the threshold) or FAILING ("fail")."""
    if value is None:
        return "neutral"
    if operator == ">=":
        if value < threshold:
            return "fail"
        budget = (1 - threshold) if rate else abs(threshold)
        return "warn" if value - threshold < WARNING_SHARE * budget else "pass"
    if value > threshold:
        return "fail"
    return "warn" if threshold - value < WARNING_SHARE * abs(threshold) else "pass"


def _bar_share(gate: dict, name: str, value: float) -> float:
    """Where `value` sits on a gate's bar. A rate's bar runs from its critical limit (or, without
    one, four times the failure budget below the goal) up to 100 %, so that 99 % and 99.6 % look
    different; a ceiling's bar runs from 0 to its critical limit (or twice the goal)."""
    threshold = float(gate.get("threshold") or 0)
    critical = gate.get("critical_threshold")
    if name in RATE_GATES and gate.get("operator") == ">=":
        low = float(critical) if critical is not None else max(0.0, threshold - 4 * (1 - threshold))
        span = 1.0 - low
        return (value - low) / span if span > 0 else 1.0
    if gate.get("operator") == ">=":
        # A floor that is no share (a custom KPI such as free disk): from 0 to twice the goal.
        return value / (threshold * 2 or 1.0)
    limit = float(critical) if critical is not None else (threshold * 2 or 1.0)
    return value / limit


@register.filter
def bar_percent(gate: dict, name: str) -> int:
    """How full a gate's progress bar is drawn (0–100)."""
    value = gate.get("value")
    if value is None:
        return 0
    return max(0, min(100, round(_bar_share(gate, name, float(value)) * 100)))


@register.filter
def goal_percent(gate: dict, name: str) -> int:
    """Where the goal's tick mark sits on the same bar."""
    threshold = gate.get("threshold")
    if threshold is None:
        return 0
    return max(0, min(100, round(_bar_share(gate, name, float(threshold)) * 100)))


# --- people ------------------------------------------------------------------------------------


@register.filter
def role_name(user) -> str:
    if not getattr(user, "is_authenticated", False):
        return ""
    if user.is_superuser:
        return roles.GROUP_NAMES[roles.ADMIN]
    names = set(user.groups.values_list("name", flat=True))
    for role in reversed(roles.ROLES):
        if roles.GROUP_NAMES[role] in names:
            return roles.GROUP_NAMES[role]
    return "No role"


@register.filter
def can(user, action: str) -> bool:
    """`{% if user|can:"promote" %}`: the rollout permission check of rollouts.permissions."""
    return can_act(user, action)


# --- fleet-wide parts of every page --------------------------------------------------------------


@register.inclusion_tag("portal/partials/emergency_banner.html", takes_context=True)
def emergency_banner(context) -> dict:
    state = FleetState.load()
    user = context.get("user")
    return {
        "fleet": state,
        "can_emergency": bool(user and user.has_perm("saferoll.emergency_stop")),
        "request": context.get("request"),
    }


@register.simple_tag
def open_alert_count() -> int:
    return Alert.objects.filter(acknowledged_at__isnull=True).count()


@register.simple_tag
def autopilot_stale_seconds() -> int:
    """After how many seconds without a round the autopilot counts as stale (settings, SPEC §6)."""
    return int(settings.SAFEROLL_AUTOPILOT_PERIOD_SECONDS * settings.SAFEROLL_AUTOPILOT_STALE_PERIODS)


@register.simple_tag
def seconds_since(value) -> int | None:
    if value is None:
        return None
    return max(0, int((timezone.now() - value).total_seconds()))
