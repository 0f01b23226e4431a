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

from rollouts import baseline as baseline_tests
from rollouts.score import health_score
from telemetry.health import (
    BOOT_SUCCESS_CRITICAL,
    CRASH_FREE_CRITICAL,
    MAX_METRICS,
    RingHealth,
    metric_name_problem,
    round_rate,
)

# Upper bounds of the settings that become durations. A day is far beyond any useful gate window or
# reporting grace; without a bound, a huge number would overflow the datetime arithmetic of every
# evaluation of a rollout that froze it.
MAX_WINDOW_MINUTES = 24 * 60
MAX_REPORTING_GRACE_SECONDS = 24 * 3600
# A device silent for a month is unreachable whatever the plan says.
MAX_UNREACHABLE_MINUTES = 30 * 24 * 60
# The share of a stage's devices that must run the release before it bakes and promotes.
DEFAULT_MIN_INSTALLED_SHARE = 0.9


# The names of the gates every plan has (optional ones included), and of the comparisons with the
# previous release (rollouts.baseline), which the score weights and the portal refer to.
BUILT_IN_GATES = {
    "crash_free_rate",
    "boot_success_rate",
    "median_latency_ms",
    "reporting_rate",
    "availability",
    "event_lag_ms",
    "dropped_events",
    "deployment_failure_rate",
    "sev1_incidents",
}
COMPARISON_GATES = {
    "crash_rate_vs_baseline",
    "boot_failure_rate_vs_baseline",
    "latency_vs_baseline",
    "silent_share_vs_baseline",
}


class Action(StrEnum):
    PROMOTE = "PROMOTE"
    PAUSE = "PAUSE"
    ROLLBACK = "ROLLBACK"
    WAIT = "WAIT"


@dataclass(frozen=True)
class GateConfig:
    """Thresholds and evaluation settings. None switches an optional gate off."""

    crash_free_min: float = 0.990
    crash_free_critical: float = CRASH_FREE_CRITICAL
    boot_success_min: float = 0.995
    boot_success_critical: float = BOOT_SUCCESS_CRITICAL
    latency_max_ms: float = 500
    latency_critical_ms: float = 1000
    window_minutes: int = 5
    # Fewer reporting devices than this, or fewer checks than `min_checks`, and the decision is
    # WAIT: no data never reads as healthy, and a rate judged on a few dozen checks is noise (one
    # failed boot in 150 checks is "99.3 %"). At or above both, every gate judges its point
    # estimate, so the decision table of 000 §9.3 comes out as written.
    min_sample: int = 10
    min_checks: int = 200
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
    # Baseline comparison (SPEC §5): the ring against the devices still on the previous release
    # over the same window. A gate that fails as much on the baseline is an outside event, not the
    # release (WAIT); a ring significantly worse than the baseline by more than the ratio fails.
    baseline_comparison: bool = True
    # Devices needed on each side before the comparison says anything.
    baseline_min_sample: int = 30
    # The ring and the baseline are compared over this last slice of the window: both sides then
    # speak of the same moments, where over the whole window a ring still installing weighs its
    # last minutes more than a baseline that reported all along.
    baseline_window_minutes: int = 1
    # One-sided significance level of the tests (they run every autopilot round, so it is small).
    baseline_alpha: float = 0.001
    baseline_crash_ratio_max: float = 1.3
    baseline_boot_ratio_max: float = 2.0
    baseline_latency_ratio_max: float = 2.0
    baseline_silence_ratio_max: float = 2.0
    # Gates on custom KPIs of the health checks (CustomGateDefinition), judged like the built-ins.
    custom_gates: tuple[CustomGateDefinition, ...] = ()
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
        "baseline_alpha",
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
        # JSON's shape (a list, not a tuple), so a frozen copy compares equal to its stored JSON.
        return {**asdict(self), "custom_gates": [asdict(gate) for gate in self.custom_gates]}

    def gate_names(self) -> set[str]:
        """Every gate this plan can judge: the built-ins, the comparisons with the previous release
        and its custom KPI gates."""
        return BUILT_IN_GATES | COMPARISON_GATES | {definition.gate_name for definition in self.custom_gates}

    def _check_consistency(self) -> None:
        unknown = sorted(set(self.score_weights) - self.gate_names())
        if unknown:
            raise ValueError(
                f"score_weights names no gate of this plan: {', '.join(unknown)}. "
                f"Gates: {', '.join(sorted(self.gate_names()))}."
            )
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
        if self.min_checks < 1:
            raise ValueError("min_checks must be at least 1.")
        if not 1 <= self.baseline_window_minutes <= self.window_minutes:
            raise ValueError("baseline_window_minutes must be between 1 and window_minutes.")
        if self.baseline_min_sample < 2:
            raise ValueError("baseline_min_sample must be at least 2.")
        if not 0 < self.baseline_alpha < 0.5:
            raise ValueError("baseline_alpha must be between 0 and 0.5.")
        for key in (
            "baseline_crash_ratio_max",
            "baseline_boot_ratio_max",
            "baseline_latency_ratio_max",
            "baseline_silence_ratio_max",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1 (the baseline itself).")
        if self.consecutive_failures_to_pause < 1:
            raise ValueError("consecutive_failures_to_pause must be at least 1.")
        if not 1 <= self.unreachable_after_minutes <= MAX_UNREACHABLE_MINUTES:
            raise ValueError(
                f"unreachable_after_minutes must be between 1 and {MAX_UNREACHABLE_MINUTES} (30 days)."
            )


def _check_value(key: str, value: Any, type_name: str) -> Any:
    if key == "custom_gates":
        return custom_gates_from(value)
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
class Baseline:
    """The devices still on the previous release: over the ring's window (`window`, what a failing
    gate is set beside) and over the plan's last `baseline_window_minutes` (`recent`), with the
    ring over that same slice (`ring_recent`), which is what the two are compared on."""

    window: RingHealth
    recent: RingHealth
    ring_recent: RingHealth

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.window.to_dict(),
            "recent": self.recent.to_dict(),
            "ring_recent": self.ring_recent.to_dict(),
        }


@dataclass(frozen=True)
class Signals:
    """What the gates weigh besides health: deployments of the ring, open incidents, how much of
    the stage runs the release and its bake. No install progress or bake clock: not judged."""

    deployment_failure_rate: float | None = None
    open_sev1_incidents: tuple[str, ...] = ()
    install: InstallProgress | None = None
    bake: BakeClock | None = None
    # Devices still on the previous release over the same moments; None: no comparison.
    baseline: Baseline | None = None


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
    # The same figure on the devices still on the previous release, over the same window.
    baseline: float | None = None
    # Failing as much on the baseline: an outside event, not the release's fault.
    excused: bool = False
    # A comparison gate's own words and figures (rollouts.baseline.Comparison).
    comparison: baseline_tests.Comparison | None = None
    # Why it fails, when its own threshold is not the reason.
    note: str | None = None

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
        if self.baseline is not None:
            data["baseline"] = round_rate(self.baseline)
        if self.excused:
            data["excused"] = True
        if self.comparison is not None:
            data.update(self.comparison.to_dict())
        return data

    def describe(self) -> str:
        if self.note is not None:
            return self.note
        if self.comparison is not None:
            return self.comparison.describe()
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
    """Judge a ring: ROLLBACK on a critical failure, PROMOTE when every gate passes, WAIT when too
    few devices reported to tell or when what fails fails as much on the previous release (an
    outside event), and PAUSE otherwise."""
    signals = signals or Signals()
    comparisons = _comparisons(health, config, signals)
    gates = _excuse_outside_events(
        _gates(health, config, signals) + [_comparison_gate(comparison) for comparison in comparisons],
        comparisons,
        config,
        signals.baseline,
    )
    enough_data = _enough_data(health, config)
    judged = [gate for gate in gates if enough_data or not gate.needs_sample]
    critical = [gate for gate in judged if gate.critical and gate.rolls_back and not gate.excused]
    failing = [gate for gate in judged if not gate.passed and not gate.excused]
    excused = [gate for gate in judged if gate.excused]

    if critical:
        action = Action.ROLLBACK
        reason = "Critical: " + "; ".join(_critical_text(gate) for gate in critical) + "."
    elif failing:
        action = Action.PAUSE
        reason = "SLO gates failing but not critical: " + "; ".join(gate.describe() for gate in failing) + "."
    elif excused:
        action = Action.WAIT
        reason = "Outside event, not the release: " + "; ".join(_excuse_text(gate) for gate in excused) + "."
    elif signals.install is not None and not signals.install.met:
        action = Action.WAIT
        reason = f"Installing: {signals.install.describe()}."
    elif not enough_data:
        action = Action.WAIT
        reason = _too_little_data(health, config)
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
        "sample": {
            "devices": health.total_devices,
            "min_devices": config.min_sample,
            "checks": health.checks,
            "min_checks": config.min_checks,
            "enough": enough_data,
        },
    }
    if signals.open_sev1_incidents:
        evaluation["open_sev1_incidents"] = list(signals.open_sev1_incidents)
    if signals.install is not None:
        evaluation["install"] = signals.install.to_dict()
    if signals.bake is not None:
        evaluation["bake"] = signals.bake.to_dict()
    if signals.baseline is not None:
        evaluation["baseline"] = signals.baseline.to_dict()
    return Decision(action=action, reason=reason, evaluation=evaluation, health=health)


def _enough_data(health: RingHealth, config: GateConfig) -> bool:
    """The minimum sample: devices, and checks when their number is known."""
    enough_checks = health.checks is None or health.checks >= config.min_checks
    return health.total_devices >= config.min_sample and enough_checks


def _too_little_data(health: RingHealth, config: GateConfig) -> str:
    counts = []
    if health.total_devices < config.min_sample:
        counts.append(f"{health.total_devices:,} of the {config.min_sample:,} devices")
    if health.checks is not None and health.checks < config.min_checks:
        counts.append(f"{health.checks:,} of the {config.min_checks:,} checks")
    return f"Too little data: {' and '.join(counts)} needed reported in the last {health.window_minutes} minutes."


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
        _at_least(
            "boot_success_rate",
            "Boot success rate",
            health.boot_success_rate,
            config.boot_success_min,
            config.boot_success_critical,
            rolls_back=True,
        ),
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
    gates.extend(_custom_gates(health, config, signals.baseline.window if signals.baseline else None))
    return gates


# The built-in gates an outside event can explain, with the figure of the baseline they read and
# the comparison that says whether the ring is worse than the baseline on it.
_BASELINE_FIGURES = {
    "crash_free_rate": ("crash_free_rate", "crash_rate"),
    "boot_success_rate": ("boot_success_rate", "boot_failure_rate"),
    "median_latency_ms": ("median_latency_ms", "latency"),
    "reporting_rate": ("reporting_rate", "silent_share"),
    "availability": ("availability", None),
    "event_lag_ms": ("event_lag_ms", None),
    "dropped_events": ("dropped_events", None),
}


def _comparisons(health: RingHealth, config: GateConfig, signals: Signals) -> list[baseline_tests.Comparison]:
    if not config.baseline_comparison or signals.baseline is None:
        return []
    return baseline_tests.compare(
        signals.baseline.ring_recent,
        signals.baseline.recent,
        min_sample=config.baseline_min_sample,
        alpha=config.baseline_alpha,
        ratios={
            "crash": config.baseline_crash_ratio_max,
            "boot": config.baseline_boot_ratio_max,
            "latency": config.baseline_latency_ratio_max,
            "silence": config.baseline_silence_ratio_max,
        },
    )


def _comparison_gate(comparison: baseline_tests.Comparison) -> Gate:
    """A regression against the baseline pauses; it never rolls back by itself."""
    ratio = None if math.isinf(comparison.ratio) else comparison.ratio
    return Gate(
        f"{comparison.metric}_vs_baseline",
        f"{comparison.label} against the previous release",
        ratio,
        comparison.ratio_max,
        "<=",
        not comparison.worse,
        comparison=comparison,
    )


def _excuse_outside_events(
    gates: list[Gate],
    comparisons: list[baseline_tests.Comparison],
    config: GateConfig,
    baseline: Baseline | None,
) -> list[Gate]:
    """A failing gate whose figure fails as much on the devices still on the previous release,
    over the same window, is not blamed on the release: a hospital's network outage slows and
    silences old and new versions alike. Not when the ring is significantly worse than the
    baseline on that figure, nor when the baseline is too small to speak for the fleet."""
    if not config.baseline_comparison or baseline is None:
        return gates
    by_metric = {comparison.metric: comparison for comparison in comparisons}
    judged = []
    for gate in gates:
        figure, metric = _BASELINE_FIGURES.get(gate.name, (None, None))
        value = _figure(baseline.window, figure)
        if value is None:
            judged.append(gate)
            continue
        gate = replace(gate, baseline=value)
        if not gate.passed and _same_trouble(gate, metric, by_metric, baseline, config):
            gate = replace(gate, excused=True)
        judged.append(gate)
    return judged


def _figure(health: RingHealth, figure: str | None) -> float | None:
    """A figure of the baseline; a baseline nobody reported in has none but its silence."""
    if figure is None or (health.total_devices == 0 and figure != "reporting_rate"):
        return None
    return getattr(health, figure)


def _device_mean(baseline: Baseline, figure: str) -> float | None:
    """The baseline's last slice as the mean of its devices' own means: when an outage hits part
    of the fleet, a median may sit on either side of it by a hair, the mean does not."""
    spread = baseline.recent.spread
    if spread is None or not spread.devices:
        return None
    if figure == "median_latency_ms":
        return spread.latency_mean
    if figure == "crash_free_rate":
        return 1 - spread.crash_rate_mean
    return None


def _same_trouble(
    gate: Gate,
    metric: str | None,
    comparisons: dict[str, baseline_tests.Comparison],
    baseline: Baseline,
    config: GateConfig,
) -> bool:
    """Whether the baseline fails the gate's threshold too, over the window or over its last
    slice (an outage that has just begun, or has just ended; by its median or its devices' mean),
    and the ring is not worse than it:
    by the statistical comparison where the figure has one (none: too few devices, no excuse),
    else by no more than half as far again past the threshold."""
    figure = _BASELINE_FIGURES[gate.name][0]
    # Silence is judged over the devices expected to report; every other figure over those that did.
    size = baseline.window.expected_devices if figure == "reporting_rate" else baseline.window.total_devices
    if (size or 0) < config.baseline_min_sample or gate.value is None:
        return False
    sign = 1 if gate.operator == ">=" else -1
    values = (
        _figure(baseline.window, figure),
        _figure(baseline.recent, figure),
        _device_mean(baseline, figure),
    )
    shortfalls = [sign * (gate.threshold - value) for value in values if value is not None]
    baseline_shortfall = max(shortfalls, default=0.0)
    if baseline_shortfall <= 0:
        return False
    if metric is not None:
        comparison = comparisons.get(metric)
        return comparison is not None and not comparison.worse
    return sign * (gate.threshold - gate.value) <= 1.5 * baseline_shortfall


def _excuse_text(gate: Gate) -> str:
    value, threshold = _show_apart(gate.name, gate.value, gate.threshold)
    return (
        f"{gate.label.lower()} {value} (goal {gate.operator} {threshold}) and "
        f"{_show(gate.name, gate.baseline)} on the previous release over the same window"
    )


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


def _at_most(name, label, value, threshold, critical_above=None, *, needs_sample=True) -> Gate:
    critical = critical_above is not None and value > critical_above
    return Gate(
        name, label, value, threshold, "<=", value <= threshold, critical, critical_above, needs_sample
    )


def _critical_text(gate: Gate) -> str:
    side = "below" if gate.operator == ">=" else "above"
    value, threshold = _show_apart(gate.name, gate.value, gate.critical_threshold)
    return f"{gate.label.lower()} {value} is {side} {threshold}"


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
    if is_custom_gate(name):
        return _show_number(value, digits)
    if name.endswith("_ms"):
        return f"{value:.{digits - 1}f} ms"
    if name in ("sev1_incidents", "dropped_events"):
        return f"{value:g}"
    return f"{value * 100:.{digits}f}%"


# --- custom KPI gates ---------------------------------------------------------------------------

CUSTOM_GATE_PREFIX = "kpi:"
CUSTOM_OPERATORS = (">=", "<=")
MAX_CUSTOM_LABEL_LENGTH = 60
# How much worse than the baseline a custom metric may be before the comparison fails: 1.5 means
# a ring whose "bad side" distance is half as large again as the baseline's.
DEFAULT_BASELINE_RATIO_MAX = 1.5
_CUSTOM_KEYS = frozenset(
    {
        "metric",
        "label",
        "operator",
        "threshold",
        "critical_threshold",
        "rolls_back",
        "baseline",
        "baseline_ratio_max",
    }
)


@dataclass(frozen=True)
class CustomGateDefinition:
    """A plan's gate on a custom KPI of the health checks: the window mean of `metric` must be
    `operator` `threshold`. Beyond `critical_threshold` (on the failing side) the failure is
    critical, which rolls back only when `rolls_back`; otherwise it pauses like any failure.
    `baseline`: also compare the ring with the devices still on the previous release."""

    metric: str
    operator: str
    threshold: float
    label: str = ""
    critical_threshold: float | None = None
    rolls_back: bool = False
    baseline: bool = False
    baseline_ratio_max: float = DEFAULT_BASELINE_RATIO_MAX

    @property
    def gate_name(self) -> str:
        return f"{CUSTOM_GATE_PREFIX}{self.metric}"

    @property
    def title(self) -> str:
        return self.label or self.metric.replace("_", " ").capitalize()

    def goal(self) -> dict[str, Any]:
        """What a chart draws of the gate: the metric, its title and its lines."""
        return {
            "metric": self.metric,
            "label": self.title,
            "operator": self.operator,
            "threshold": self.threshold,
            "critical_threshold": self.critical_threshold,
        }


def is_custom_gate(name: str) -> bool:
    return name.startswith(CUSTOM_GATE_PREFIX)


def custom_metric_names(config: GateConfig) -> tuple[str, ...]:
    """The custom metrics a plan gates on: what its ring health must average."""
    return tuple(definition.metric for definition in config.custom_gates)


def custom_gates_from(value: Any) -> tuple[CustomGateDefinition, ...]:
    """A plan's `custom_gates` list, checked; ValueError names the bad key, e.g.
    "custom_gates[1].threshold must be a number."."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValueError("custom_gates must be a list of gate definitions.")
    if len(value) > MAX_METRICS:
        raise ValueError(f"custom_gates may hold at most {MAX_METRICS} gates.")
    definitions = tuple(_custom_gate_from(f"custom_gates[{index}]", item) for index, item in enumerate(value))
    seen: set[str] = set()
    for index, definition in enumerate(definitions):
        if definition.metric in seen:
            raise ValueError(f"custom_gates[{index}].metric: '{definition.metric}' has a gate already.")
        seen.add(definition.metric)
    return definitions


def _custom_gate_from(where: str, item: Any) -> CustomGateDefinition:
    if isinstance(item, CustomGateDefinition):
        return item
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object with metric, operator and threshold.")
    unknown = sorted(set(item) - _CUSTOM_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown key(s): {', '.join(unknown)}.")
    for key in ("metric", "operator", "threshold"):
        if item.get(key) is None:
            raise ValueError(f"{where}.{key} is required.")
    problem = metric_name_problem(item["metric"])
    if problem:
        raise ValueError(f"{where}.metric: {problem}")
    if item["operator"] not in CUSTOM_OPERATORS:
        raise ValueError(f"{where}.operator must be '>=' or '<='.")
    label = item.get("label") or ""
    if not isinstance(label, str) or len(label) > MAX_CUSTOM_LABEL_LENGTH:
        raise ValueError(f"{where}.label must be text of at most {MAX_CUSTOM_LABEL_LENGTH} characters.")
    definition = CustomGateDefinition(
        metric=item["metric"],
        operator=item["operator"],
        threshold=_finite_number(f"{where}.threshold", item["threshold"]),
        label=label,
        critical_threshold=(
            None
            if item.get("critical_threshold") is None
            else _finite_number(f"{where}.critical_threshold", item["critical_threshold"])
        ),
        rolls_back=_flag(f"{where}.rolls_back", item.get("rolls_back", False)),
        baseline=_flag(f"{where}.baseline", item.get("baseline", False)),
        baseline_ratio_max=_finite_number(
            f"{where}.baseline_ratio_max", item.get("baseline_ratio_max", DEFAULT_BASELINE_RATIO_MAX)
        ),
    )
    _check_custom_consistency(where, definition)
    return definition


def _check_custom_consistency(where: str, definition: CustomGateDefinition) -> None:
    critical = definition.critical_threshold
    if critical is not None:
        if definition.operator == ">=" and critical > definition.threshold:
            raise ValueError(f"{where}.critical_threshold must not be above the threshold for '>='.")
        if definition.operator == "<=" and critical < definition.threshold:
            raise ValueError(f"{where}.critical_threshold must not be below the threshold for '<='.")
    if definition.rolls_back and critical is None:
        raise ValueError(f"{where}.rolls_back needs a critical_threshold.")
    if definition.baseline_ratio_max < 1:
        raise ValueError(f"{where}.baseline_ratio_max must be at least 1.")


def _finite_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number.")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{key} must be a finite number.")
    return number


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false.")
    return value


@dataclass(frozen=True)
class CustomGate(Gate):
    """A gate on a custom KPI: its evaluation entry also says what it measures. A metric nobody
    reported in the window is not judged (`judged` False): absent data is neither a pass nor a
    failure of the release, and the built-in gates still see the ring."""

    metric: str = ""
    # The plan asked for this metric to be compared with the previous release too.
    compare_baseline: bool = False
    judged: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(custom=True, metric=self.metric, label=self.label, compare_baseline=self.compare_baseline)
        if not self.judged:
            data["judged"] = False
        return data


def _custom_gates(health: RingHealth, config: GateConfig, baseline: RingHealth | None) -> list[Gate]:
    gates: list[Gate] = []
    for definition in config.custom_gates:
        gate = _custom_gate(definition, health.metrics.get(definition.metric))
        baseline_value = baseline.metrics.get(definition.metric) if baseline is not None else None
        if gate.judged and baseline_value is not None and config.baseline_comparison:
            gate = _against_baseline(gate, definition, baseline_value)
        gates.append(gate)
    return gates


def _against_baseline(
    gate: CustomGate, definition: CustomGateDefinition, baseline_value: float
) -> CustomGate:
    """A custom metric beside the previous release's: failing its threshold as much as the baseline
    does is an outside event (excused); a plan that asks for the comparison also fails a metric
    more than its `baseline_ratio_max` times worse than the baseline's."""
    verdict = custom_metric_vs_baseline(definition, gate.value, baseline_value)
    gate = replace(gate, baseline=baseline_value)
    baseline_fails = not _meets(definition.operator, baseline_value, definition.threshold)
    if not gate.passed and baseline_fails and verdict.passed:
        return replace(gate, excused=True)
    if definition.baseline and verdict.passed is False:
        return replace(gate, passed=False, note=verdict.reason)
    return gate


def _custom_gate(definition: CustomGateDefinition, value: float | None) -> CustomGate:
    critical_line = definition.critical_threshold
    if value is None:
        passed = critical = False
    else:
        passed = _meets(definition.operator, value, definition.threshold)
        # As for the built-ins, critical is strictly beyond the critical line.
        critical = critical_line is not None and not _meets(definition.operator, value, critical_line)
    return CustomGate(
        name=definition.gate_name,
        label=definition.title,
        value=value,
        threshold=definition.threshold,
        operator=definition.operator,
        passed=passed or value is None,
        critical=critical,
        critical_threshold=critical_line,
        rolls_back=definition.rolls_back,
        metric=definition.metric,
        compare_baseline=definition.baseline,
        judged=value is not None,
    )


def _meets(operator: str, value: float, line: float) -> bool:
    return value >= line if operator == ">=" else value <= line


@dataclass(frozen=True)
class BaselineVerdict:
    """A custom metric of the ring against the same metric of the devices on the previous release.
    `ratio` is how many times worse the ring is (above 1: worse; None: not compared); `passed` is
    None when either side has no data."""

    passed: bool | None
    ratio: float | None
    reason: str


def custom_metric_vs_baseline(
    definition: CustomGateDefinition, ring_value: float | None, baseline_value: float | None
) -> BaselineVerdict:
    """Relative change of a custom metric against the baseline, in the metric's bad direction: for
    '<=' (lower is better) ring / baseline, for '>=' (higher is better) baseline / ring. The ring
    fails when that ratio is above the definition's baseline_ratio_max. A ratio compares magnitudes,
    so it suits metrics that are never negative (counts, percentages, temperatures in °C indoors);
    a zero on the good side is infinitely worse than anything on the bad side and equal to zero."""
    title = definition.title
    if ring_value is None or baseline_value is None:
        return BaselineVerdict(None, None, f"{title}: no baseline comparison without data on both sides.")
    worse, better = (
        (ring_value, baseline_value) if definition.operator == "<=" else (baseline_value, ring_value)
    )
    ratio = _times_worse(worse, better)
    passed = ratio <= definition.baseline_ratio_max
    shown = "∞" if math.isinf(ratio) else f"{ratio:.2f}"
    ring_text, baseline_text = _show_number(ring_value, 2), _show_number(baseline_value, 2)
    verdict = "within" if passed else "beyond"
    return BaselineVerdict(
        passed,
        ratio,
        f"{title} {ring_text} against {baseline_text} on the previous release: {shown}× as bad, "
        f"{verdict} the {definition.baseline_ratio_max:g}× allowed",
    )


def _times_worse(worse: float, better: float) -> float:
    if better <= 0:
        return 1.0 if worse <= 0 else math.inf
    return max(worse, 0.0) / better


def _show_number(value: float, digits: int) -> str:
    """A custom KPI has no known unit: as many decimals as it takes, without trailing zeros."""
    return f"{value:,.{digits + 1}f}".rstrip("0").rstrip(".")
