"""Fleet-wide metrics, read from the database when /metrics is scraped.

What lives in the database is counted there, so every web process answers the same numbers and
nothing is lost when one restarts. Each family is one aggregate query: a few per scrape. Every
known label value is exported, zero included, so a ring that goes silent reads 0 instead of
vanishing from its graph.
"""

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import TypeVar

from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils import timezone
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from devices.choices import DeviceStatus
from devices.models import Device
from rollouts.choices import EvaluationSource, RolloutAction, RolloutStatus
from rollouts.gates import Action
from rollouts.models import Evaluation, Rollout
from saferoll.core.metrics import process_registry
from saferoll.core.models import Alert, AlertLevel, AuditEvent, FleetState
from saferoll.core.status import autopilot_status
from telemetry.selectors import checks_received_by_ring

INGEST_WINDOW = dt.timedelta(minutes=1)


def exposition() -> bytes:
    """What GET /metrics answers, in Prometheus text format: the fleet, then this process's own."""
    return generate_latest(_Together(FleetCollector(), process_registry()))


class _Together:
    """Several collectors as one, so the answer is one exposition."""

    def __init__(self, *collectors) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class FleetCollector:
    """The fleet as the database knows it at this moment."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from _rollouts()
        yield _devices()
        yield _health_checks_last_minute(now)
        yield _evaluations()
        yield _rollout_transitions()
        yield _open_alerts()
        yield from _autopilot(now)
        yield _emergency_stop()


def _rollouts() -> Iterator[Metric]:
    counts = _counted(Rollout.objects.all(), "status", "current_ring")
    by_status: dict[tuple, int] = {}
    active_by_ring: dict[tuple, int] = {}
    for (status, ring), count in counts.items():
        by_status[(status,)] = by_status.get((status,), 0) + count
        if status == RolloutStatus.ACTIVE and ring:
            active_by_ring[(ring,)] = active_by_ring.get((ring,), 0) + count
    yield _filled(
        GaugeMetricFamily("saferoll_rollouts", "Rollouts by status.", labels=["status"]),
        by_status,
        [(status,) for status in RolloutStatus.values],
    )
    yield _filled(
        GaugeMetricFamily(
            "saferoll_active_rollouts", "Active rollouts by the ring they are deploying.", labels=["ring"]
        ),
        active_by_ring,
        _configured_rings(),
    )


def _devices() -> Metric:
    return _filled(
        GaugeMetricFamily("saferoll_devices", "Enrolled devices by status.", labels=["status"]),
        _counted(Device.objects.all(), "status"),
        [(status,) for status in DeviceStatus.values],
    )


def _health_checks_last_minute(now: dt.datetime) -> Metric:
    recent = checks_received_by_ring(after=now - INGEST_WINDOW, until=now)
    return _filled(
        GaugeMetricFamily(
            "saferoll_health_checks_last_minute",
            "Health checks stored with a receive time in the last 60 seconds, by the device's ring: "
            "the fleet's ingest rate, whichever process took the checks.",
            labels=["ring"],
        ),
        {(ring,): count for ring, count in recent.items()},
        _configured_rings(),
    )


def _evaluations() -> Metric:
    # Evaluations are never pruned, so their count only grows: a true counter. The count reads the
    # whole table, a row per active rollout and autopilot period (8,640 a day at 10 s); should that
    # ever weigh, an index on (action, source) turns it into an index-only scan.
    return _filled(
        CounterMetricFamily(
            "saferoll_evaluations",
            "Stored judgements of a rollout's ring against its gates, by the decision "
            "(PROMOTE, WAIT, PAUSE, ROLLBACK) and who asked (the autopilot or a request).",
            labels=["action", "source"],
        ),
        _counted(Evaluation.objects.all(), "action", "source"),
        [(action.value, source) for action in Action for source in EvaluationSource.values],
    )


def _rollout_transitions() -> Metric:
    # Audit events are append-only; the index on action finds the rollout transitions among them.
    transitions = AuditEvent.objects.filter(action__in=RolloutAction.values, rollout__isnull=False)
    return _filled(
        CounterMetricFamily(
            "saferoll_rollout_transitions",
            "Rollout transitions carried out, by action: people's (START, PROMOTE, PAUSE, ...) "
            "and the autopilot's (AUTO_PROMOTE, AUTO_PAUSE, AUTO_ROLLBACK).",
            labels=["action"],
        ),
        _counted(transitions, "action"),
        [(action,) for action in RolloutAction.values],
    )


def _open_alerts() -> Metric:
    return _filled(
        GaugeMetricFamily("saferoll_open_alerts", "Alerts nobody has acknowledged yet.", labels=["level"]),
        _counted(Alert.objects.filter(acknowledged_at__isnull=True), "level"),
        [(level,) for level in AlertLevel.values],
    )


def _autopilot(now: dt.datetime) -> Iterator[Metric]:
    status = autopilot_status(now)
    if status["seconds_ago"] is not None:
        yield GaugeMetricFamily(
            "saferoll_autopilot_last_run_age_seconds",
            "Seconds since the autopilot last finished a round (absent until its first).",
            value=status["seconds_ago"],
        )
    yield GaugeMetricFamily(
        "saferoll_autopilot_stale",
        "1 when the autopilot has not finished a round for SAFEROLL_AUTOPILOT_STALE_PERIODS periods "
        "(a dead worker or beat; GET /health says degraded), else 0.",
        value=int(status["stale"]),
    )


def _emergency_stop() -> Metric:
    return GaugeMetricFamily(
        "saferoll_emergency_stop",
        "1 while the fleet-wide emergency stop is on, else 0.",
        value=int(FleetState.load().emergency_stop),
    )


def _counted(queryset: QuerySet, *fields: str) -> dict[tuple, int]:
    """COUNT grouped by `fields`, as {(value, ...): count}. order_by() keeps the model's default
    ordering out of the GROUP BY."""
    rows = queryset.order_by().values_list(*fields).annotate(count=Count("pk"))
    return {tuple(row[:-1]): row[-1] for row in rows}


_Family = TypeVar("_Family", GaugeMetricFamily, CounterMetricFamily)


def _filled(family: _Family, counts: dict[tuple, int], known: Iterable[tuple]) -> _Family:
    """Every known label value (0 when nothing has it), then any other the database holds."""
    known = list(known)
    for labels in known + sorted(set(counts) - set(known), key=str):
        family.add_metric([str(value) for value in labels], counts.get(labels, 0))
    return family


def _configured_rings() -> list[tuple]:
    return [(ring,) for ring in settings.SAFEROLL_RING_SHARES]
