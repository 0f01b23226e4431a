"""One error shape for the whole API: {"error": sentence, ...details}."""

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    """An action that the object's current state does not allow (HTTP 409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "This action conflicts with the current state."
    default_code = "conflict"

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.extra = extra


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) if str(exc) else "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, DjangoValidationError):
        # Services validate with Django's ValidationError so the admin can use them too.
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    response.data = _error_body(exc, response.data)
    return response


def _error_body(exc, data) -> dict:
    if isinstance(exc, Conflict):
        return {"error": str(exc.detail), **exc.extra}
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(data, dict) and set(data) == {"non_field_errors"}:
            return {"error": " ".join(str(message) for message in data["non_field_errors"])}
        if isinstance(data, list):
            return {"error": " ".join(str(message) for message in data)}
        return {"error": "Invalid input.", "fields": data}
    if isinstance(exc, exceptions.ParseError):
        return {"error": f"Malformed request body: {exc.detail}"}
    if isinstance(exc, exceptions.Throttled):
        return _throttled_body(exc.wait)
    if isinstance(data, dict) and "detail" in data:
        return {"error": str(data["detail"])}
    return {"error": str(data)}


def _throttled_body(wait: int | None) -> dict:
    if wait is None:
        return {"error": "Too many requests from this client; try again later."}
    unit = "second" if wait == 1 else "seconds"
    return {
        "error": f"Too many requests from this client; wait {wait} {unit}, then try again.",
        "retry_after": wait,
    }


def error_response(message: str, code: int = status.HTTP_400_BAD_REQUEST, **extra) -> Response:
    return Response({"error": message, **extra}, status=code)
