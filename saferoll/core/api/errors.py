"""One error shape for the whole API: {"error": sentence, ...details}."""

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.utils.encoding import escape_uri_path
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from saferoll.core.errors import ServiceRefused


def exception_handler(exc, context):
    if isinstance(exc, ServiceRefused):
        return Response(refusal_body(exc), status=exc.status)
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


def refusal_body(refused: ServiceRefused) -> dict:
    """A service's refusal in the error shape: the sentence, the field at fault, any detail."""
    body = {"error": refused.message, **refused.extra}
    if refused.errors:
        body["fields"] = refused.errors
    return body


def _error_body(exc, data) -> dict:
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(data, dict) and set(data) == {"non_field_errors"}:
            return {"error": " ".join(str(message) for message in data["non_field_errors"])}
        if isinstance(data, list):
            return {"error": " ".join(str(message) for message in data)}
        return {"error": "Invalid input.", "fields": data}
    if isinstance(exc, exceptions.ParseError):
        return {"error": f"Malformed request body: {exc.detail}"}
    if isinstance(exc, exceptions.Throttled):
        return _throttled_body(exc.wait)  # type: ignore[attr-defined]  # set in __init__; not in the stubs
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


# --- What Django answers itself: no such URL, a request refused before any view, a crash ---------
# (saferoll.urls names these handlers). The API keeps its error shape; the portal keeps its pages.

API_PREFIX = "/api/"


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def bad_request(request, exception):
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    return JsonResponse({"error": _refusal_sentence(exception)}, status=status.HTTP_400_BAD_REQUEST)


def _refusal_sentence(exception) -> str:
    if isinstance(exception, TooManyFieldsSent):
        return f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields; send fewer."
    if isinstance(exception, TooManyFilesSent):
        return f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files; send fewer."
    if isinstance(exception, RequestDataTooBig):
        return f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
    # Other refusals (a forged host, a malformed upload) say nothing a client could act on.
    return "The request is malformed and was refused."


def not_found(request, exception):
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    # Escaped as in a URL, so that a NUL or a control character stays printable.
    path = escape_uri_path(request.path)
    return JsonResponse(
        {"error": f"There is no API endpoint or object at {path}."}, status=status.HTTP_404_NOT_FOUND
    )


def server_error(request):
    if not _is_api(request):
        return defaults.server_error(request)
    return JsonResponse(
        {"error": "SafeRoll could not answer this request. It has been logged; try again in a moment."},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
