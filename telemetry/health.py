"""What telemetry tells about a ring: its health over a window. The gates judge it (rollouts.gates)."""

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

# Custom KPIs: extra named numbers a health check may carry (`metrics`), gated by a plan like the
# built-in figures. The limits keep a check's row small and a window's aggregate query short: one
# average per metric a plan gates on.
MAX_METRICS = 20
MAX_METRIC_NAME_LENGTH = 40
METRIC_NAME = re.compile(r"[a-z][a-z0-9_]*")
# The names a health check, a ring's health or a gate already give a meaning; a custom metric of
# the same name would read as the built-in figure wherever the two are shown side by side.
BUILT_IN_NAMES = frozenset(
    {
        "device_id",
        "ring",
        "version",
        "boot_ok",
        "crash_free",
        "checkin_latency_ms",
        "timestamp",
        "availability",
        "event_lag_ms",
        "dropped_events",
        "metrics",
        "total_devices",
        "crash_free_rate",
        "boot_success_rate",
        "median_latency_ms",
        "window_minutes",
        "expected_devices",
        "checks",
        "reporting_rate",
        "deployment_failure_rate",
        "sev1_incidents",
    }
)


# Critically unhealthy: below these, the gates roll a ring back by themselves (the gate engine's
# default critical lines, rollouts.gates.GateConfig), and a device whose newest minute of checks is
# below either counts toward the fleet-wide emergency stop (telemetry.rollups keeps the count).
CRASH_FREE_CRITICAL = 0.950
BOOT_SUCCESS_CRITICAL = 0.970


def round_rate(value: float | int | None) -> float | int | None:
    """Figures as they are shown and sent: rates to four places, counts as they are."""
    if isinstance(value, float):
        return round(value, 4)
    return value


@dataclass(frozen=True)
class DeviceSpread:
    """The window's devices, each summarised by the mean of its own checks, then described across
    devices (mean and sample variance). The checks of one device are not independent of each other,
    so a comparison between two groups of devices counts devices, not checks."""

    devices: int
    crash_rate_mean: float
    crash_rate_var: float
    latency_mean: float
    latency_var: float


@dataclass(frozen=True)
class RingHealth:
    """Aggregated health of a ring over a window (000 §6.4), plus what SafeRoll adds."""

    ring: str
    total_devices: int = 0
    crash_free_rate: float = 1.0
    boot_success_rate: float = 1.0
    median_latency_ms: float = 0
    window_minutes: int = 5
    # Devices that should have reported in the window; None when unknown.
    expected_devices: int | None = None
    # Checks behind the rates; None when unknown (then a rate is judged as it stands).
    checks: int | None = None
    availability: float | None = None
    event_lag_ms: float | None = None
    dropped_events: float | None = None
    # Per-device statistics behind the baseline comparison; None when not measured.
    spread: DeviceSpread | None = None
    # Window mean of each custom metric asked for that some check of the window carried; a metric
    # nobody reported is absent, never 0.
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def boot_failures(self) -> int | None:
        """Checks that reported a failed boot; None when the number of checks is unknown."""
        if self.checks is None:
            return None
        return round(self.checks * (1 - self.boot_success_rate))

    @property
    def reporting_rate(self) -> float | None:
        if not self.expected_devices:
            return None
        return min(1.0, self.total_devices / self.expected_devices)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reporting_rate"] = round_rate(self.reporting_rate)
        return data


def metric_name_problem(name: object) -> str | None:
    """Why `name` cannot name a custom metric, or None when it can."""
    if not isinstance(name, str):
        return "A metric name must be a string."
    if len(name) > MAX_METRIC_NAME_LENGTH:
        return f"The metric name '{name[:MAX_METRIC_NAME_LENGTH]}…' is longer than {MAX_METRIC_NAME_LENGTH} characters."
    if not METRIC_NAME.fullmatch(name):
        return (
            f"The metric name '{name}' is not allowed: use lowercase letters, digits and underscores, "
            "starting with a letter."
        )
    if name in BUILT_IN_NAMES:
        return f"The metric name '{name}' is a built-in field; choose another name."
    return None


def metric_value_problem(name: str, value: object) -> str | None:
    """Why `value` cannot be the value of the custom metric `name`, or None when it can: a JSON
    number that fits a double (a larger integer would fail the aggregate's cast to float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"The metric '{name}' must be a JSON number, not {_json_kind(value)}."
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        return f"The metric '{name}' must be a finite number."
    return None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
