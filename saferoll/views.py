"""The two system endpoints of 000 §5.4: the root status and the monitoring health check."""

import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from saferoll import selectors

logger = logging.getLogger(__name__)


def _wants_html(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept


@require_GET
def root(request: HttpRequest):
    """The status JSON for programs; people in a browser go to the portal."""
    if _wants_html(request):
        return redirect("admin:index")
    return JsonResponse(
        {
            "name": "SafeRoll",
            "version": settings.SAFEROLL_VERSION,
            "status": "running",
            **selectors.fleet_counts(),
        }
    )


@require_GET
def health(request: HttpRequest):
    """Healthy only when the database answers a real query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.error("health check: database unreachable: %s", exc)
        response = JsonResponse({"status": "unhealthy", "database": "unreachable"}, status=503)
        response["Retry-After"] = "5"
        return response
    return JsonResponse({"status": "healthy", "database": "ok"})
