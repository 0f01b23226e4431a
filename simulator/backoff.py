"""When a simulated device tries the server again after a failure.

Exponential backoff with "equal jitter": the n-th consecutive failure waits a random time in
[d/2, d] where d = base × factor^(n-1), capped. The random half spreads a thousand devices that
failed together (a database restart answers all of them 503 in the same second) so they do not
come back in the same second either; the fixed half keeps a device from hammering a server that is
still down. The cap (16 s) keeps recovery inside the 30 s target of SPEC §14 / 004 X-1.

A server's Retry-After is a floor, never shortened: the device waits the hint plus up to 20 %, again
so that the herd it told to come back "in 5 s" does not arrive at once.

Pure: the random generator is passed in, so schedules are reproducible and testable.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

# A misconfigured proxy answering "Retry-After: 86400" should not silence a device for a day.
RETRY_AFTER_CAP_SECONDS = 300.0
RETRY_AFTER_JITTER = 0.2


@dataclass
class Backoff:
    """Consecutive-failure counter and the delay it implies."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 16.0
    failures: int = 0

    def ceiling(self, failures: int) -> float:
        """Longest wait after `failures` consecutive failures (the jitter picks below it)."""
        if failures <= 0:
            return 0.0
        return min(self.cap, self.base * self.factor ** (failures - 1))

    def next_delay(self, rng: random.Random, retry_after: float | None = None) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        self.failures += 1
        if retry_after is not None:
            floor = min(max(retry_after, 0.0), RETRY_AFTER_CAP_SECONDS)
            return floor * (1.0 + rng.uniform(0.0, RETRY_AFTER_JITTER))
        ceiling = self.ceiling(self.failures)
        return rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent
    or unreadable (then the device's own backoff applies)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())
