"""Turn a lost database into 503 with Retry-After, so clients back off and retry (004 X-1), and
answer a path that no database query could use as not found."""

import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, OperationalError | InterfaceError) or _is_pool_timeout(exception):
            logger.warning("database unavailable: %s", exception)
            response = JsonResponse(
                {"error": "The database is unavailable; retry shortly. Nothing was stored."}, status=503
            )
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return None


def _is_pool_timeout(exception: Exception) -> bool:
    return type(exception).__name__ == "PoolTimeout" or (
        isinstance(exception, DatabaseError) and "connection" in str(exception).lower()
    )


class NulInPathMiddleware:
    """A path with a NUL character (%00) names nothing in SafeRoll, and PostgreSQL refuses NUL in any
    text, so looking up the rollout, release, plan or cohort it names would fail as a server error.
    It is answered 404 before any view (saferoll.core.api.errors words it for the API)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path:
            raise Http404("A path with a NUL character names nothing.")
        return self.get_response(request)
