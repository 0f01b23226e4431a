"""The embedded default end to end: `manage.py serve` with no DATABASE_URL or REDIS_URL runs the
autopilot's worker and beat in its own process, and rolls a critical rollout back over HTTP."""

import socket

from tests.benchmarks.autopilot_reaction import measure_once

PERIOD_SECONDS = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_embedded_server_rolls_back_within_two_periods_of_critical_data():
    # measure_once raises TimeoutError unless the rollout is rolled back within the deadline.
    elapsed = measure_once(0, port=free_port(), period=PERIOD_SECONDS, deadline=2 * PERIOD_SECONDS)
    assert elapsed <= 2 * PERIOD_SECONDS
