"""What this process did with the health checks it was sent, for GET /metrics.

Process-local counters: each web process counts its own requests. With several web processes
(gunicorn workers) PROMETHEUS_MULTIPROC_DIR makes /metrics add them all up (saferoll/metrics.py).
The fleet-wide rate, whichever process is scraped, is read from the database (saferoll/fleet_metrics.py).
"""

from prometheus_client import Counter

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"

HEALTH_CHECKS = Counter(
    "saferoll_health_checks_received_total",
    "Health checks this process was sent: accepted (stored), duplicate (a retry of a stored check, "
    "acknowledged) or rejected (invalid, or not the sender's to report).",
    ["outcome"],
)
# Every outcome is exported from the start, so a rate over it never begins with a missing series.
for _outcome in (ACCEPTED, DUPLICATE, REJECTED):
    HEALTH_CHECKS.labels(_outcome)


def record_ingested(*, accepted: int, duplicates: int) -> None:
    HEALTH_CHECKS.labels(ACCEPTED).inc(accepted)
    HEALTH_CHECKS.labels(DUPLICATE).inc(duplicates)


def record_rejected(count: int) -> None:
    HEALTH_CHECKS.labels(REJECTED).inc(count)
