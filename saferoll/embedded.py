"""The embedded autopilot: a real Celery worker and beat in the web process, on the in-memory
broker, so the product runs with no service at all. Used by `manage.py serve` without REDIS_URL."""

import logging
import socket
import threading
from typing import Protocol

from celery import beat
from celery.worker import WorkController
from django.conf import settings

from saferoll.celery import app

logger = logging.getLogger(__name__)


class _Service(Protocol):
    """Celery's embedded beat service (celery.beat has no type information)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class EmbeddedAutopilot:
    def __init__(self) -> None:
        self.worker: WorkController | None = None
        self.worker_thread: threading.Thread | None = None
        self.beat: _Service | None = None

    def start(self) -> None:
        app.finalize()
        app.set_current()
        app.set_default()
        # The solo pool runs tasks one at a time in the worker's own thread: plenty for one
        # process, and no fork of a process that also serves the web.
        self.worker = WorkController(
            app=app,
            hostname=f"embedded@{socket.gethostname()}",
            pool="solo",
            concurrency=1,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self.worker_thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)
        self.worker_thread.start()
        self.beat = embedded_beat = beat.EmbeddedService(
            app, thread=True, max_interval=1, schedule_filename=settings.CELERY_BEAT_SCHEDULE_FILENAME
        )
        embedded_beat.start()
        logger.info("embedded autopilot started (worker and beat in this process, in-memory broker)")

    def stop(self) -> None:
        if self.beat is not None:
            self.beat.stop()
        if self.worker is not None:
            self.worker.stop(in_sighandler=False)
        if self.worker_thread is not None:
            self.worker_thread.join(timeout=10)
        logger.info("embedded autopilot stopped")
