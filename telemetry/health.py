"""What telemetry tells about a ring: its health over a window. The gates judge it (rollouts.gates)."""

from dataclasses import asdict, dataclass
from typing import Any


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
