"""Retry schedule: exponential with equal jitter, capped; Retry-After is a floor."""

import datetime as dt
import random

import pytest

from simulator.backoff import RETRY_AFTER_CAP_SECONDS, Backoff, parse_retry_after


def test_it_doubles_the_ceiling_up_to_the_cap():
    backoff = Backoff(base=1.0, factor=2.0, cap=16.0)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 16, 16]


def test_it_keeps_the_jitter_between_half_and_the_whole_ceiling():
    rng = random.Random(5)
    for failures in range(1, 9):
        ceiling = Backoff().ceiling(failures)
        delays = []
        for _ in range(300):
            backoff = Backoff(failures=failures - 1)
            delays.append(backoff.next_delay(rng))
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        # Spread, not a constant: a thousand devices must not come back in the same instant.
        assert max(delays) - min(delays) > ceiling / 4


def test_it_counts_consecutive_failures_and_starts_over_after_a_reset():
    backoff = Backoff()
    rng = random.Random(1)
    delays = [backoff.next_delay(rng) for _ in range(5)]
    assert backoff.failures == 5
    assert delays[-1] >= 8
    backoff.reset()
    assert backoff.next_delay(rng) <= 1.0


def test_it_never_retries_before_retry_after_and_adds_at_most_a_fifth():
    rng = random.Random(2)
    delays = [Backoff().next_delay(rng, retry_after=5.0) for _ in range(500)]
    assert min(delays) >= 5.0 and max(delays) <= 6.0
    # Even after many failures, the server's hint decides.
    assert Backoff(failures=10).next_delay(rng, retry_after=2.0) < 2.5


def test_it_caps_an_absurd_retry_after():
    delay = Backoff().next_delay(random.Random(3), retry_after=86_400)
    assert RETRY_AFTER_CAP_SECONDS <= delay <= RETRY_AFTER_CAP_SECONDS * 1.2


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), (" 2.5 ", 2.5), ("-3", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_it_reads_retry_after_seconds(header, expected):
    assert parse_retry_after(header) == expected


def test_it_reads_retry_after_as_an_http_date():
    now = dt.datetime(2025, 11, 20, 10, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Thu, 20 Nov 2025 10:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 20 Nov 2025 09:00:00 GMT", now=now) == 0.0
