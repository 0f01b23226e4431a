"""Turn a lost database into 503 with Retry-After, so clients back off and retry (004 X-1)."""

import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import JsonResponse

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
