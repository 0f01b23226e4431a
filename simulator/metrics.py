"""What the fleet measures about itself: check rate, schedule lag, failures.

The point of these numbers is to show that the simulator keeps its schedule (1,000 devices at a
5 s interval is 200 checks/s): "generated" counts checks taken on schedule, "delivered" those the
server acknowledged (batches included), and lag is how late a device's tick started against its
slot. Rates are over a sliding window of whole seconds so `status` shows the present, not the
average since start.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque

from simulator.device import Observer

RATE_WINDOW_SECONDS = 30
LAG_SAMPLES = 5000
NOTICE_LIMIT = 200


class FleetMetrics(Observer):
    """Counters the devices feed; one per fleet."""

    def __init__(self, *, started_at: float, window: int = RATE_WINDOW_SECONDS):
        self.started_at = started_at
        self.window = window
        self.generated = 0
        self.delivered = 0
        self.duplicates = 0
        self.dropped = 0
        self.rejected = 0
        self.failures: Counter[str] = Counter()
        self.last_failure: dict[str, str] = {}
        self.lags: deque[float] = deque(maxlen=LAG_SAMPLES)
        self.answer_times: deque[float] = deque(maxlen=LAG_SAMPLES)
        self.max_lag = 0.0
        self._generated_per_second: Counter[int] = Counter()
        self._delivered_per_second: Counter[int] = Counter()
        self.notices: deque[str] = deque(maxlen=NOTICE_LIMIT)
        self._unread_notices: deque[str] = deque(maxlen=NOTICE_LIMIT)

    # ---- Observer ----------------------------------------------------------------------------

    def check_generated(self, now: float, lag: float) -> None:
        self.generated += 1
        self._generated_per_second[int(now)] += 1
        lag = max(0.0, lag)
        self.lags.append(lag)
        self.max_lag = max(self.max_lag, lag)

    def checks_delivered(self, now: float, accepted: int, duplicates: int) -> None:
        self.delivered += accepted
        self.duplicates += duplicates
        self._delivered_per_second[int(now)] += accepted + duplicates

    def answer_time(self, seconds: float) -> None:
        """How long the server took to answer one request, as a device saw it."""
        self.answer_times.append(seconds)

    def checks_dropped(self, count: int) -> None:
        self.dropped += count

    def checks_rejected(self, count: int, reason: str) -> None:
        self.rejected += count
        self._count_failure("check rejected", reason)

    def failure(self, kind: str, detail: str) -> None:
        self._count_failure(kind, detail)

    def notice(self, text: str) -> None:
        self.notices.append(text)
        self._unread_notices.append(text)

    def _count_failure(self, kind: str, detail: str) -> None:
        if kind not in self.failures:
            # The first of each kind is worth telling the operator about; the rest are counted.
            self.notice(f"first {kind}: {detail}")
        self.failures[kind] += 1
        self.last_failure[kind] = detail

    # ---- reading ---------------------------------------------------------------------------

    def take_notices(self) -> list[str]:
        """Notices not yet shown, oldest first."""
        notices = list(self._unread_notices)
        self._unread_notices.clear()
        return notices

    def _rate(self, per_second: Counter[int], now: float) -> float:
        # Whole seconds only: the current second is still filling up.
        end = int(now)
        start = max(end - self.window, int(self.started_at))
        for second in [s for s in per_second if s < end - self.window]:
            del per_second[second]
        span = end - start
        if span <= 0:
            return 0.0
        return sum(count for second, count in per_second.items() if start <= second < end) / span

    def summary(self, now: float) -> dict:
        lags = sorted(self.lags)
        answers = sorted(self.answer_times)
        return {
            "uptime_s": round(now - self.started_at, 1),
            "checks_generated": self.generated,
            "checks_delivered": self.delivered,
            "checks_duplicate": self.duplicates,
            "checks_dropped": self.dropped,
            "checks_rejected": self.rejected,
            "generated_per_s": round(self._rate(self._generated_per_second, now), 1),
            "delivered_per_s": round(self._rate(self._delivered_per_second, now), 1),
            "lag_ms": {
                "p50": _ms(statistics.median(lags)) if lags else 0,
                "p95": _ms(lags[int(0.95 * (len(lags) - 1))]) if lags else 0,
                "max": _ms(self.max_lag),
            },
            "answer_ms": {
                "p50": _ms(statistics.median(answers)) if answers else 0,
                "p95": _ms(answers[int(0.95 * (len(answers) - 1))]) if answers else 0,
            },
            "failures": dict(self.failures.most_common()),
        }


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
