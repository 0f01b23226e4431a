"""The ceilings of the scale benchmark: what SafeRoll's reads and writes do, done by hand-written SQL
over the same rows, timed in the same run.

Hand-written here means planned by hand too: joins are hash joins whatever the planner's statistics
say. Right after a bulk load there are none, and PostgreSQL then plans a gate's join as a nested
loop over the whole window for every device (the issue's ten-minute plan); a person writing these
queries for freshly loaded tables would make sure they do not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from rollouts.choices import LIVE_DEPLOYMENT_STATES, DeploymentState, RolloutStatus
from rollouts.models import Rollout
from tests.benchmarks.scale_fleet import WINDOW

_HEALTH = """
    count(DISTINCT c.device_id), count(*), avg(c.crash_free), count(*) FILTER (WHERE c.boot_ok),
    percentile_cont(0.5) WITHIN GROUP (ORDER BY c.checkin_latency_ms), avg(c.availability),
    avg(c.dropped_events), percentile_cont(0.5) WITHIN GROUP (ORDER BY c.event_lag_ms)
"""


class _Undone(Exception):
    """Raised to roll back a ceiling's writes once they are done."""


@contextmanager
def hand_planned(*, undo: bool = False) -> Iterator[CursorWrapper]:
    """A cursor in a transaction that plans joins without nested loops; with `undo` the transaction
    is rolled back at the end, so that the real step finds the rows as they were."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_nestloop = off")
            yield cursor
            if undo:
                raise _Undone
    except _Undone:
        pass


def ring_health(ring: str | None = None) -> Callable[[], None]:
    """Ring health of one ring, or of every ring in one pass (the live broadcast's), and the number
    of devices each ring expects."""

    def run() -> None:
        now = timezone.now()
        where, params = "c.received_at >= %s AND c.received_at <= %s", [now - WINDOW, now]
        devices, device_params = "", []
        if ring is not None:
            where, params = f"{where} AND c.ring = %s", [*params, ring]
            devices, device_params = "WHERE ring = %s", [ring]
        with hand_planned() as cursor:
            cursor.execute(
                f"SELECT c.ring, {_HEALTH} FROM telemetry_healthcheck c WHERE {where} GROUP BY c.ring", params
            )
            cursor.execute(
                f"SELECT ring, count(*) FROM devices_device {devices} GROUP BY ring", device_params
            )

    return run


def gate_health(rollout: Rollout) -> Callable[[], None]:
    """What the gates judge of a rollout's current ring: the checks of its version that each device
    sent after the rollout targeted it, in one join of the window to its deployments. A judgement
    also compares the ring with the devices still on the previous release; that read is not in it."""

    def run() -> None:
        with hand_planned() as cursor:
            cursor.execute(
                f"""
                SELECT {_HEALTH}
                FROM telemetry_healthcheck c
                JOIN rollouts_devicedeployment d ON d.device_id = c.device_id AND d.created_at <= c.received_at
                WHERE d.rollout_id = %s AND d.ring = %s AND c.version = %s AND c.received_at >= %s
                """,
                [rollout.pk, rollout.current_ring, rollout.release.version, timezone.now() - WINDOW],
            )

    return run


def blast_radius(rollout: Rollout) -> Callable[[], None]:
    """The rest of a rollout page's figures: its deployments by ring and state, and the fleet's size."""

    def run() -> None:
        with hand_planned() as cursor:
            cursor.execute(
                "SELECT ring, state, count(*) FROM rollouts_devicedeployment WHERE rollout_id = %s GROUP BY ring, state",
                [rollout.pk],
            )
            cursor.execute("SELECT count(*) FROM devices_device")

    return run


def deploy(rollout: Rollout, ring: str) -> Callable[[], None]:
    """deploy_stage's work as one INSERT … SELECT, rolled back: pending deployments for the ring's
    devices with a credential, on a variant the release supports, not live in another active or
    paused rollout, not targeted by this one yet and not already running the release."""

    def run() -> None:
        with hand_planned(undo=True) as cursor:
            cursor.execute(
                """
                INSERT INTO rollouts_devicedeployment (rollout_id, device_id, ring, state, from_version,
                    attempts, released_at, last_error, diagnostics, created_at, state_changed_at)
                SELECT %(rollout)s, d.id, %(ring)s, 'pending', d.app_version, 0, %(now)s, '', '', %(now)s, %(now)s
                FROM devices_device d
                WHERE d.ring = %(ring)s AND d.token_hash IS NOT NULL AND d.app_version <> %(version)s
                  AND (NOT EXISTS (SELECT 1 FROM rollouts_release_compatible_variants v
                                   WHERE v.release_id = %(release)s)
                       OR d.variant_id IN (SELECT v.hardwarevariant_id FROM rollouts_release_compatible_variants v
                                           WHERE v.release_id = %(release)s))
                  AND NOT EXISTS (SELECT 1 FROM rollouts_devicedeployment o
                                  JOIN rollouts_rollout r ON r.id = o.rollout_id
                                  WHERE o.device_id = d.id AND o.rollout_id <> %(rollout)s
                                    AND o.state = ANY(%(live)s) AND r.status = ANY(%(busy)s))
                  AND NOT EXISTS (SELECT 1 FROM rollouts_devicedeployment t
                                  WHERE t.device_id = d.id AND t.rollout_id = %(rollout)s)
                """,
                {
                    "rollout": rollout.pk,
                    "release": rollout.release_id,
                    "version": rollout.release.version,
                    "ring": ring,
                    "now": timezone.now(),
                    "live": list(LIVE_DEPLOYMENT_STATES),
                    "busy": [RolloutStatus.ACTIVE, RolloutStatus.PAUSED],
                },
            )

    return run


def rollback(rollout: Rollout) -> Callable[[], None]:
    """deployments_roll_back's two UPDATEs, rolled back: installed devices go back, the others are
    cancelled."""

    def run() -> None:
        now = timezone.now()
        installed = [DeploymentState.DOWNLOADING, DeploymentState.VERIFIED, DeploymentState.ACTIVATED]
        with hand_planned(undo=True) as cursor:
            cursor.execute(
                """
                UPDATE rollouts_devicedeployment SET state = %s, rolling_back_at = %s, state_changed_at = %s
                WHERE rollout_id = %s AND state = ANY(%s)
                """,
                [DeploymentState.ROLLING_BACK, now, now, rollout.pk, installed],
            )
            cursor.execute(
                """
                UPDATE rollouts_devicedeployment SET state = %s, state_changed_at = %s
                WHERE rollout_id = %s AND state = %s
                """,
                [DeploymentState.CANCELLED, now, rollout.pk, DeploymentState.PENDING],
            )

    return run
