"""What the fleet measures about itself: check rate, schedule lag, requests, failures.

The point of these numbers is to show that the simulator keeps its schedule (1,000 devices at a
5 s interval is 200 checks/s): "generated" counts checks taken on schedule, "delivered" those the
server acknowledged (batches included), and lag is how late a device's tick started against its
slot. "requests" counts the answers the server gave, whoever asked (devices and gateways), which
is the load the fleet puts on it. Rates are over a sliding window of whole seconds so `status`
shows the present, not the average since start.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from collections.abc import Callable

from simulator.gateway import GatewayObserver

RATE_WINDOW_SECONDS = 30
LAG_SAMPLES = 5000
NOTICE_LIMIT = 200


class FleetMetrics(GatewayObserver):
    """Counters the devices and gateways feed; one per fleet."""

    def __init__(
        self,
        *,
        started_at: float,
        window: int = RATE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        self.started_at = started_at
        self.window = window
        # Only for answer_time, which is told a duration and not when: the fleet's clock.
        self.clock = clock
        self.generated = 0
        self.delivered = 0
        self.duplicates = 0
        self.dropped = 0
        self.rejected = 0
        self.failures: Counter[str] = Counter()
        self.last_failure: dict[str, str] = {}
        self.lags: deque[float] = deque(maxlen=LAG_SAMPLES)
        # (when, seconds): percentiles are taken over the rate window, so a backlog that has
        # drained stops showing as soon as it has, however few requests came since.
        self.answer_times: deque[tuple[float, float]] = deque(maxlen=LAG_SAMPLES)
        self.batch_answer_times: deque[tuple[float, float]] = deque(maxlen=LAG_SAMPLES)
        self.max_lag = 0.0
        self._generated_per_second: Counter[int] = Counter()
        self._delivered_per_second: Counter[int] = Counter()
        self.requests = 0
        self._requests_per_second: Counter[int] = Counter()
        self.batches = 0
        self.batched_checks = 0
        self._batches_per_second: Counter[int] = Counter()
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
        """How long the server took to answer one request of a device, as the device saw it
        (waiting for one of the fleet's connections included)."""
        self.answer_times.append((self.clock(), seconds))
        self._count_request()

    def batch_answer_time(self, seconds: float) -> None:
        """The same for a gateway's batch."""
        self.batch_answer_times.append((self.clock(), seconds))
        self._count_request()

    def _count_request(self) -> None:
        self.requests += 1
        self._requests_per_second[int(self.clock())] += 1

    def batch_sent(self, now: float, size: int) -> None:
        self.batches += 1
        self.batched_checks += size
        self._batches_per_second[int(now)] += 1

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
        return {
            "uptime_s": round(now - self.started_at, 1),
            "checks_generated": self.generated,
            "checks_delivered": self.delivered,
            "checks_duplicate": self.duplicates,
            "checks_dropped": self.dropped,
            "checks_rejected": self.rejected,
            "generated_per_s": round(self._rate(self._generated_per_second, now), 1),
            "delivered_per_s": round(self._rate(self._delivered_per_second, now), 1),
            "requests": self.requests,
            "requests_per_s": round(self._rate(self._requests_per_second, now), 1),
            "batches": self.batches,
            "batches_per_s": round(self._rate(self._batches_per_second, now), 1),
            "checks_per_batch": round(self.batched_checks / self.batches, 1) if self.batches else 0.0,
            "lag_ms": {
                "p50": _ms(statistics.median(lags)) if lags else 0,
                "p95": _ms(lags[int(0.95 * (len(lags) - 1))]) if lags else 0,
                "max": _ms(self.max_lag),
            },
            "answer_ms": _percentiles(self.answer_times, since=now - self.window),
            "batch_answer_ms": _percentiles(self.batch_answer_times, since=now - self.window),
            "failures": dict(self.failures.most_common()),
        }


def _percentiles(samples: deque[tuple[float, float]], *, since: float) -> dict[str, int]:
    ordered = sorted(seconds for when, seconds in samples if when >= since)
    if not ordered:
        return {"p50": 0, "p95": 0}
    return {"p50": _ms(statistics.median(ordered)), "p95": _ms(ordered[int(0.95 * (len(ordered) - 1))])}


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
