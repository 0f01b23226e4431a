"""The system endpoints: the root status and the monitoring health check (000 §5.4), and the
Prometheus metrics (SPEC §13)."""

import logging
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from saferoll.core.metrics import CHALLENGE, UNAUTHORIZED, bearer_token_accepted
from saferoll.core.status import autopilot_status
from saferoll.portal import fleet_metrics, selectors
from saferoll.portal import views as portal_views

logger = logging.getLogger(__name__)

# Seconds a monitor or client should wait before asking again when the database is down.
RETRY_AFTER_SECONDS = 5


def _wants_html(request: HttpRequest) -> bool:
    """A browser prefers HTML; scripts send JSON, */* or no Accept header at all and get JSON.

    With no Accept header Django assumes */*, whose first choice is JSON."""
    return request.get_preferred_type(["application/json", "text/html"]) == "text/html"


@require_GET
def root(request: HttpRequest) -> HttpResponse:
    """The status JSON for programs; people in a browser get the portal's dashboard."""
    if _wants_html(request):
        return portal_views.dashboard(request)
    response = JsonResponse(
        {
            "name": "SafeRoll",
            "version": settings.SAFEROLL_VERSION,
            "status": "running",
            **selectors.fleet_counts(),
        }
    )
    response["Vary"] = "Accept"
    return response


@require_GET
def health(request: HttpRequest) -> HttpResponse:
    """Unhealthy (503 with Retry-After) only when the database does not answer a real query;
    degraded when Redis is unreachable or the autopilot has stopped evaluating."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.error("health check: database unreachable: %s", exc)
        response = JsonResponse({"status": "unhealthy", "database": "unreachable"}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    body: dict[str, Any] = {
        "status": "healthy",
        "database": "ok",
        "redis": _redis_status(),
        "autopilot": autopilot_status(),
    }
    if body["redis"] == "unreachable" or body["autopilot"]["stale"]:
        body["status"] = "degraded"
    return JsonResponse(body)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: the fleet as the database knows it, and this process's own counters."""
    if not bearer_token_accepted(request.headers.get("Authorization", "")):
        response = JsonResponse({"error": UNAUTHORIZED}, status=401)
        response[CHALLENGE[0]] = CHALLENGE[1]
        return response
    return HttpResponse(fleet_metrics.exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def _redis_status() -> str:
    if not settings.REDIS_URL:
        return "not configured"
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        logger.warning("health check: redis unreachable: %s", exc)
        return "unreachable"
    return "ok"
