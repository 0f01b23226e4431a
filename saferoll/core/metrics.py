"""Prometheus instrumentation of this process, and the Celery worker's own metrics endpoint.

Counters and histograms live in the process that counts: the health checks a web process took
(telemetry/metrics.py), the tasks a worker ran (here). The fleet's state is read from the database
at scrape time instead (saferoll/fleet_metrics.py), so it is the same whichever process answers.

Several processes behind one scrape target (gunicorn workers, a prefork Celery pool) each hold
their own counts. Give them one empty directory in PROMETHEUS_MULTIPROC_DIR, set before start and
wiped on restart: prometheus_client then keeps every process's values there, and the exposition
adds them up.
"""

import hmac
import json
import logging
import os
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery import signals
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from django.conf import settings
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

logger = logging.getLogger(__name__)

# In the text format every counter and histogram would carry a `_created` gauge per label set:
# series nobody graphs, that only add to what each scrape stores.
disable_created_metrics()

# From the 10 ms of one rollout's evaluation to the minutes a large prune may take (its limit: 600 s).
TASK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

TASK_DURATION = Histogram(
    "saferoll_task_duration_seconds",
    "Time a Celery task took to run in this worker, by task and final state (SUCCESS, FAILURE, RETRY).",
    ["task", "state"],
    buckets=TASK_BUCKETS,
)

# When each running task started, by task id: prerun and postrun fire in the same process.
_started: dict[str, float] = {}


def instrument_celery() -> None:
    """Time every task, and serve the worker's metrics when SAFEROLL_WORKER_METRICS_PORT is set."""
    signals.task_prerun.connect(_task_started, weak=False, dispatch_uid="saferoll.core.metrics.prerun")
    signals.task_postrun.connect(_task_finished, weak=False, dispatch_uid="saferoll.core.metrics.postrun")
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="saferoll.core.metrics.worker")


def _task_started(task_id: str, **kwargs) -> None:
    _started[task_id] = time.perf_counter()


def _task_finished(task_id: str, task, state: str | None = None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(task.name, state or "UNKNOWN").observe(time.perf_counter() - started)


def process_registry() -> CollectorRegistry:
    """This process's instruments, or with PROMETHEUS_MULTIPROC_DIR those of every process sharing it."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


UNAUTHORIZED = "Metrics need an 'Authorization: Bearer <token>' header with the SAFEROLL_METRICS_TOKEN."
CHALLENGE = ("WWW-Authenticate", 'Bearer realm="metrics"')


def bearer_token_accepted(authorization: str) -> bool:
    """Whether an Authorization header opens the metrics: always when SAFEROLL_METRICS_TOKEN is unset."""
    token = settings.SAFEROLL_METRICS_TOKEN
    if not token:
        return True
    scheme, _, presented = authorization.partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


# --- The worker's endpoint ---------------------------------------------------------------------


def on_worker_init(sender, **kwargs) -> None:
    """A worker starting: serve its metrics on SAFEROLL_WORKER_METRICS_PORT, on every interface."""
    port = settings.SAFEROLL_WORKER_METRICS_PORT
    if not port:
        return
    if _pool_forks(sender) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        logger.warning(
            "worker metrics: tasks run in the pool's child processes, which this endpoint cannot see; "
            "set PROMETHEUS_MULTIPROC_DIR to an empty directory, or run with --pool threads or solo"
        )
    serve_worker_metrics(port)
    logger.info("worker metrics on port %s", port)


def _pool_forks(worker) -> bool:
    return get_implementation(getattr(worker, "pool_cls", None) or "prefork") is PreforkPool


def serve_worker_metrics(port: int, host: str = "") -> WSGIServer:
    """Serve this process's metrics on `port`, in a daemon thread, behind the same token as /metrics.
    Returns the server, which `shutdown()` stops."""
    server = make_server(host, port, _worker_metrics_app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server


def _worker_metrics_app(environ, start_response):
    if not bearer_token_accepted(environ.get("HTTP_AUTHORIZATION", "")):
        start_response("401 Unauthorized", [("Content-Type", "application/json"), CHALLENGE])
        return [json.dumps({"error": UNAUTHORIZED}).encode()]
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)])
    return [generate_latest(process_registry())]


class _QuietHandler(WSGIRequestHandler):
    """A scrape every 15 seconds is not worth a log line."""

    def log_message(self, format, *args) -> None:
        pass
