"""`manage.py serve [--host H] [--port P]`: the portal, the API and the websockets from one ASGI
process (uvicorn). Ctrl-C stops it cleanly."""

import contextlib

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from saferoll.embedded import EmbeddedAutopilot

ASGI_APP = "saferoll.asgi:application"


def server_config(*, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        ASGI_APP,
        host=host,
        port=port,
        # SafeRoll answers clients directly: X-Forwarded-* headers are not trusted.
        proxy_headers=False,
        log_level="info",
        # The sans-I/O websockets implementation: the legacy one is deprecated.
        ws="websockets-sansio",
        # Django's ASGI handler does not speak the lifespan protocol; skip the probe and its warning.
        lifespan="off",
    )


def run_server(*, host: str, port: int) -> None:
    """Serve until interrupted. uvicorn handles SIGINT/SIGTERM itself: it stops accepting,
    finishes the requests in flight and returns.

    Without REDIS_URL the autopilot's worker and beat run in this process on the in-memory
    broker (the embedded default); with it they are separate `celery -A saferoll worker -B`."""
    autopilot = None if settings.REDIS_URL else EmbeddedAutopilot()
    if autopilot:
        autopilot.start()
    try:
        uvicorn.Server(server_config(host=host, port=port)).run()
    finally:
        if autopilot:
            autopilot.stop()


class Command(BaseCommand):
    help = "Serve SafeRoll (portal, API, websockets) with uvicorn."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        self.stdout.write(f"SafeRoll on http://{host}:{port}/ (admin at /admin/, API docs at /api/docs/)")
        # A second Ctrl-C during shutdown interrupts uvicorn's own handling: leave without a traceback.
        with contextlib.suppress(KeyboardInterrupt):
            run_server(host=host, port=port)
        self.stdout.write("SafeRoll stopped.")
