"""The SLO gate engine: from a ring's health to PROMOTE, PAUSE, ROLLBACK or WAIT.

Pure Python with no Django imports, so it can be tested and benchmarked on its own. The default
thresholds and the decision are those of 000 §6.2 / §9.3; WAIT (too little data), the reporting
rate, the optional KPIs of 002 and the deployment-failure and Sev1 gates come on top.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from rollouts.score import health_score
from telemetry.health import RingHealth, round_rate

# A critical boot-success verdict needs the whole 95 % Wilson interval below the critical line, so
# the true rate is below it with at least that confidence: two failed boots in 60 checks must not
# roll a healthy release back.
CRITICAL_CONFIDENCE_Z = 1.96

# Upper bounds of the settings that become durations. A day is far beyond any useful gate window or
# reporting grace; without a bound, a huge number would overflow the datetime arithmetic of every
# evaluation of a rollout that froze it.
MAX_WINDOW_MINUTES = 24 * 60
MAX_REPORTING_GRACE_SECONDS = 24 * 3600
# A device silent for a month is unreachable whatever the plan says.
MAX_UNREACHABLE_MINUTES = 30 * 24 * 60
# The share of a stage's devices that must run the release before it bakes and promotes.
DEFAULT_MIN_INSTALLED_SHARE = 0.9


class Action(StrEnum):
    PROMOTE = "PROMOTE"
    PAUSE = "PAUSE"
    ROLLBACK = "ROLLBACK"
    WAIT = "WAIT"


@dataclass(frozen=True)
class GateConfig:
    """Thresholds and evaluation settings. None switches an optional gate off."""

    crash_free_min: float = 0.990
    crash_free_critical: float = 0.950
    boot_success_min: float = 0.995
    boot_success_critical: float = 0.970
    latency_max_ms: float = 500
    latency_critical_ms: float = 1000
    window_minutes: int = 5
    # Fewer reporting devices than this and the decision is WAIT: no data never reads as healthy.
    min_sample: int = 10
    # Share of the ring's devices running the release that reported in the window.
    reporting_rate_min: float | None = 0.90
    # A ring that goes this silent is treated as failing (000 §9.5 "network issue").
    reporting_rate_critical: float | None = 0.50
    # A device that activated more recently than this is not yet expected to have reported.
    reporting_grace_seconds: int = 60
    availability_min: float | None = None
    event_lag_max_ms: float | None = None
    # Mean dropped events per check.
    dropped_events_max: float | None = None
    # Share of the ring's deployments that failed or were rolled back (002 C8).
    deployment_failure_max: float | None = 0.05
    block_on_sev1: bool = True
    # Consecutive non-critical failures before the autopilot pauses (002 C8).
    consecutive_failures_to_pause: int = 3
    # A device of the ring not heard from for this long, and not running the release, counts as
    # unreachable: shown apart, and left out of the installed share's denominator.
    unreachable_after_minutes: int = 60
    # The health score's weight of each gate by name (rollouts.score); a gate not named keeps its
    # default. Left out of the hash: a dict is not hashable, and equal settings still compare equal.
    score_weights: dict[str, float] = field(default_factory=dict, hash=False)

    _RATES = (
        "crash_free_min",
        "crash_free_critical",
        "boot_success_min",
        "boot_success_critical",
        "reporting_rate_min",
        "reporting_rate_critical",
        "availability_min",
        "deployment_failure_max",
    )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GateConfig:
        """Build from a plan's JSON, filling defaults; raise ValueError naming the bad key."""
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"Unknown gate setting(s): {', '.join(unknown)}.")
        for key, value in data.items():
            # The field types are strings: this module postpones the evaluation of annotations.
            data[key] = _check_value(key, value, str(known[key].type))
        config = cls(**data)
        config._check_consistency()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _check_consistency(self) -> None:
        if self.crash_free_critical > self.crash_free_min:
            raise ValueError("crash_free_critical must not be above crash_free_min.")
        if self.boot_success_critical > self.boot_success_min:
            raise ValueError("boot_success_critical must not be above boot_success_min.")
        if self.latency_critical_ms < self.latency_max_ms:
            raise ValueError("latency_critical_ms must not be below latency_max_ms.")
        if not 1 <= self.window_minutes <= MAX_WINDOW_MINUTES:
            raise ValueError(f"window_minutes must be between 1 and {MAX_WINDOW_MINUTES} (a day).")
        if self.reporting_grace_seconds > MAX_REPORTING_GRACE_SECONDS:
            raise ValueError(
                f"reporting_grace_seconds must be at most {MAX_REPORTING_GRACE_SECONDS} (a day)."
            )
        if self.min_sample < 1:
            raise ValueError("min_sample must be at least 1.")
        if self.consecutive_failures_to_pause < 1:
            raise ValueError("consecutive_failures_to_pause must be at least 1.")
        if not 1 <= self.unreachable_after_minutes <= MAX_UNREACHABLE_MINUTES:
            raise ValueError(
                f"unreachable_after_minutes must be between 1 and {MAX_UNREACHABLE_MINUTES} (30 days)."
            )


def _check_value(key: str, value: Any, type_name: str) -> Any:
    if key == "score_weights":
        return _check_score_weights(value)
    optional = "None" in type_name
    if value is None:
        if optional:
            return None
        raise ValueError(f"{key} may not be null.")
    if "bool" in type_name:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false.")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number.")
    if value < 0:
        raise ValueError(f"{key} must not be negative.")
    if key in GateConfig._RATES and value > 1:
        raise ValueError(f"{key} is a share between 0 and 1.")
    if "int" in type_name and "float" not in type_name:
        if value != int(value):
            raise ValueError(f"{key} must be a whole number.")
        return int(value)
    return float(value)


def _check_score_weights(value: Any) -> dict[str, float]:
    """{gate name: weight}, each weight a number ≥ 0; a fresh dict, so the plan's JSON stays its own."""
    if not isinstance(value, dict):
        raise ValueError("score_weights must be an object of gate names and weights.")
    weights = {}
    for name, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise ValueError(f"score_weights.{name} must be a number.")
        if weight < 0:
            raise ValueError(f"score_weights.{name} must not be negative.")
        weights[str(name)] = float(weight)
    return weights


@dataclass(frozen=True)
class InstallProgress:
    """How much of a stage runs the release. `targeted` counts the stage's deployments (cancelled
    ones aside); `unreachable` are those of them not installed whose device has been silent for
    longer than the plan allows; `incompatible` are devices of the stage's rings whose hardware the
    release does not support (never targeted). Neither is in the share's denominator."""

    version: str
    targeted: int
    installed: int
    unreachable: int = 0
    incompatible: int = 0
    min_share: float = DEFAULT_MIN_INSTALLED_SHARE

    @property
    def reachable(self) -> int:
        return max(self.targeted - self.unreachable, 0)

    @property
    def share(self) -> float | None:
        """installed / (targeted − unreachable); None when no reachable device was targeted."""
        return min(self.installed / self.reachable, 1.0) if self.reachable else None

    @property
    def met(self) -> bool:
        """A stage with nothing reachable to install on has nothing to wait for."""
        share = self.share
        return share is None or share >= self.min_share - 1e-9

    def to_dict(self) -> dict[str, Any]:
        share = self.share
        return {
            "targeted": self.targeted,
            "installed": self.installed,
            "unreachable": self.unreachable,
            "incompatible": self.incompatible,
            "share": None if share is None else round(share, 4),
            "min_share": self.min_share,
            "met": self.met,
        }

    def describe(self) -> str:
        """ "4,210 of 50,000 devices run v2.1; 90% needed; 120 unreachable and 30 incompatible not counted"."""
        text = (
            f"{self.installed:,} of {self.targeted:,} devices run {self.version}; "
            f"{_percent(self.min_share)} needed"
        )
        apart = [
            f"{count:,} {label}"
            for count, label in ((self.unreachable, "unreachable"), (self.incompatible, "incompatible"))
            if count
        ]
        if apart:
            text += f"; {' and '.join(apart)} not counted"
        return text


@dataclass(frozen=True)
class BakeClock:
    """A stage's bake: `minutes` long, running from `started_at` (None until its installed share is
    met). `remaining_seconds` is what is left at `now`: the whole bake while it has not started."""

    ring: str
    minutes: float
    started_at: dt.datetime | None
    now: dt.datetime

    @property
    def remaining_seconds(self) -> float:
        if self.started_at is None:
            return self.minutes * 60
        return max(bake_remaining_seconds(self.started_at, self.minutes, self.now), 0.0)

    @property
    def done(self) -> bool:
        """A stage without a bake has nothing to wait for once its share is met."""
        return self.minutes <= 0 or self.remaining_seconds <= 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "minutes": self.minutes,
            "remaining_seconds": math.ceil(self.remaining_seconds),
        }

    def describe(self) -> str:
        """ "Baking: 42 s left of 5 min in ring_5"."""
        left = human_duration(self.remaining_seconds)
        return f"Baking: {left} left of {human_duration(self.minutes * 60)} in {self.ring}"


def bake_remaining_seconds(started_at: dt.datetime, minutes: float, now: dt.datetime) -> float:
    """Seconds of the bake still to run at `now` (negative once it is over)."""
    return (started_at + dt.timedelta(minutes=minutes) - now).total_seconds()


def human_duration(seconds: float) -> str:
    """42 s, 5 min, 4 min 10 s, 2 h, 1 h 30 min, 1 d 2 h: the two largest units that matter."""
    total = max(math.ceil(seconds), 0)
    if total < 60:
        return f"{total} s"
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    parts = []
    for label, size in units:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count} {label}")
        if len(parts) == 2 or (parts and not total):
            break
        if parts and count == 0:
            break
    return " ".join(parts)


def _percent(share: float) -> str:
    return f"{share * 100:.1f}".rstrip("0").rstrip(".") + "%"


@dataclass(frozen=True)
class Signals:
    """What the gates weigh besides health: deployments of the ring, open incidents, how much of
    the stage runs the release and its bake. No install progress or bake clock: not judged."""

    deployment_failure_rate: float | None = None
    open_sev1_incidents: tuple[str, ...] = ()
    install: InstallProgress | None = None
    bake: BakeClock | None = None


@dataclass(frozen=True)
class Gate:
    name: str
    label: str
    value: float | int | None
    threshold: float | int
    operator: str
    passed: bool
    critical: bool = False
    critical_threshold: float | None = None
    # Gates that judge health need the minimum sample; the others stand on their own.
    needs_sample: bool = True
    # A critical failure of these gates means ROLLBACK (000 §6.2); the rest can only pause.
    rolls_back: bool = False
    # The most the true rate can be, at CRITICAL_CONFIDENCE_Z, given how many checks it rests on.
    upper_bound: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "value": round_rate(self.value),
            "threshold": self.threshold,
            "operator": self.operator,
            "passed": self.passed,
        }
        if self.critical_threshold is not None:
            data["critical_threshold"] = self.critical_threshold
            data["critical"] = self.critical
        if self.upper_bound is not None:
            data["upper_bound"] = round_rate(self.upper_bound)
        return data

    def describe(self) -> str:
        value, threshold = _show_apart(self.name, self.value, self.threshold)
        return f"{self.label} {value} (goal {self.operator} {threshold})"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    evaluation: dict[str, Any]
    # The health judged, unrounded, so a page that shows both reads the ring once. None for a
    # decision rebuilt from a stored evaluation.
    health: RingHealth | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "reason": self.reason, "evaluation": self.evaluation}


def evaluate(health: RingHealth, config: GateConfig, signals: Signals | None = None) -> Decision:
    """Judge a ring: ROLLBACK on a critical failure, PROMOTE when every gate passes,
    WAIT when too few devices reported to tell, and PAUSE otherwise."""
    signals = signals or Signals()
    gates = _gates(health, config, signals)
    enough_data = health.total_devices >= config.min_sample
    judged = [gate for gate in gates if enough_data or not gate.needs_sample]
    critical = [gate for gate in judged if gate.critical and gate.rolls_back]
    failing = [gate for gate in judged if not gate.passed]

    if critical:
        action = Action.ROLLBACK
        reason = "Critical: " + "; ".join(_critical_text(gate) for gate in critical) + "."
    elif failing:
        action = Action.PAUSE
        reason = "SLO gates failing but not critical: " + "; ".join(gate.describe() for gate in failing) + "."
    elif signals.install is not None and not signals.install.met:
        action = Action.WAIT
        reason = f"Installing: {signals.install.describe()}."
    elif not enough_data:
        action = Action.WAIT
        reason = (
            f"Too little data: {health.total_devices} of the {config.min_sample} devices needed "
            f"reported in the last {health.window_minutes} minutes."
        )
    elif signals.bake is not None and not signals.bake.done:
        action = Action.WAIT
        reason = f"{signals.bake.describe()}."
    else:
        action = Action.PROMOTE
        reason = f"All {len(gates)} SLO gates passed on {health.total_devices} devices."

    overall = {Action.PROMOTE: "PASS", Action.WAIT: "WAIT"}.get(action, "FAIL")
    evaluation = {
        "ring": health.ring,
        "overall": overall,
        "gates": {gate.name: gate.to_dict() for gate in gates},
        "score": health_score(judged, config.score_weights).to_dict(),
        "health": health.to_dict(),
    }
    if signals.open_sev1_incidents:
        evaluation["open_sev1_incidents"] = list(signals.open_sev1_incidents)
    if signals.install is not None:
        evaluation["install"] = signals.install.to_dict()
    if signals.bake is not None:
        evaluation["bake"] = signals.bake.to_dict()
    return Decision(action=action, reason=reason, evaluation=evaluation, health=health)


def _gates(health: RingHealth, config: GateConfig, signals: Signals) -> list[Gate]:
    gates = [
        _at_least(
            "crash_free_rate",
            "Crash-free rate",
            health.crash_free_rate,
            config.crash_free_min,
            config.crash_free_critical,
            rolls_back=True,
        ),
        _boot_success(health, config),
        _at_most(
            "median_latency_ms",
            "Median latency",
            health.median_latency_ms,
            config.latency_max_ms,
            config.latency_critical_ms,
        ),
    ]
    if config.reporting_rate_min is not None and health.reporting_rate is not None:
        # Judged whenever the ring has enough devices to expect reports from: silence is the signal.
        enough_expected = (health.expected_devices or 0) >= config.min_sample
        gate = _at_least(
            "reporting_rate",
            "Reporting rate",
            health.reporting_rate,
            config.reporting_rate_min,
            config.reporting_rate_critical,
            rolls_back=True,
            needs_sample=False,
        )
        if enough_expected:
            gates.append(gate)
    if config.availability_min is not None and health.availability is not None:
        gates.append(_at_least("availability", "Availability", health.availability, config.availability_min))
    if config.event_lag_max_ms is not None and health.event_lag_ms is not None:
        gates.append(_at_most("event_lag_ms", "Event lag", health.event_lag_ms, config.event_lag_max_ms))
    if config.dropped_events_max is not None and health.dropped_events is not None:
        gates.append(
            _at_most("dropped_events", "Dropped events", health.dropped_events, config.dropped_events_max)
        )
    if config.deployment_failure_max is not None and signals.deployment_failure_rate is not None:
        gates.append(
            _at_most(
                "deployment_failure_rate",
                "Deployment failure rate",
                signals.deployment_failure_rate,
                config.deployment_failure_max,
                needs_sample=False,
            )
        )
    if config.block_on_sev1:
        count = len(signals.open_sev1_incidents)
        gates.append(
            Gate("sev1_incidents", "Open Sev1 incidents", count, 0, "<=", count == 0, needs_sample=False)
        )
    return gates


def _at_least(
    name, label, value, threshold, critical_below=None, *, rolls_back=False, needs_sample=True
) -> Gate:
    critical = critical_below is not None and value < critical_below
    return Gate(
        name,
        label,
        value,
        threshold,
        ">=",
        value >= threshold,
        critical,
        critical_below,
        needs_sample,
        rolls_back,
    )


def _boot_success(health: RingHealth, config: GateConfig) -> Gate:
    """Boot success is a share of checks: critical only when even its upper confidence bound is
    below the critical line, so a handful of checks with one failed boot pauses at most."""
    gate = _at_least(
        "boot_success_rate",
        "Boot success rate",
        health.boot_success_rate,
        config.boot_success_min,
        config.boot_success_critical,
        rolls_back=True,
    )
    if not health.checks:
        return gate
    bound = wilson_upper_bound(health.boot_success_rate, health.checks)
    return replace(gate, critical=bound < config.boot_success_critical, upper_bound=bound)


def wilson_upper_bound(rate: float, trials: int, z: float = CRITICAL_CONFIDENCE_Z) -> float:
    """Upper end of the Wilson score interval of a proportion observed over `trials`."""
    denominator = 1 + z * z / trials
    centre = rate + z * z / (2 * trials)
    margin = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    return min(1.0, (centre + margin) / denominator)


def _at_most(name, label, value, threshold, critical_above=None, *, needs_sample=True) -> Gate:
    critical = critical_above is not None and value > critical_above
    return Gate(
        name, label, value, threshold, "<=", value <= threshold, critical, critical_above, needs_sample
    )


def _critical_text(gate: Gate) -> str:
    side = "below" if gate.operator == ">=" else "above"
    value, threshold = _show_apart(gate.name, gate.value, gate.critical_threshold)
    text = f"{gate.label.lower()} {value} is {side} {threshold}"
    if gate.upper_bound is not None:
        text += f" (at most {_show(gate.name, gate.upper_bound)} with 95% confidence)"
    return text


def _show_apart(name: str, value: float | None, threshold: float | None) -> tuple[str, str]:
    """Both shown with as many decimals as it takes for different numbers not to read the same:
    a failing 98.96% must not appear as "99.0% (goal >= 99.0%)"."""
    for digits in range(1, 4):
        shown = _show(name, value, digits), _show(name, threshold, digits)
        if shown[0] != shown[1] or value == threshold:
            return shown
    return shown


def _show(name: str, value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if name.endswith("_ms"):
        return f"{value:.{digits - 1}f} ms"
    if name in ("sev1_incidents", "dropped_events"):
        return f"{value:g}"
    return f"{value * 100:.{digits}f}%"
