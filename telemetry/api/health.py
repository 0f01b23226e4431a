"""Health API (000 §5.1, SPEC §4): ingestion, single and batch, and aggregated ring health.

Views parse and authorize; telemetry.services writes and telemetry.selectors reads.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.authentication import DeviceAuthentication
from saferoll.core.api.errors import error_response
from saferoll.core.api.schema import ErrorSerializer
from saferoll.core.api.throttles import THROTTLED_RESPONSE, HealthBatchThrottle, HealthThrottle
from telemetry import metrics, selectors
from telemetry.api.serializers import (
    HealthBatchErrorSerializer,
    HealthBatchInputSerializer,
    HealthBatchResultSerializer,
    HealthCheckInputSerializer,
    HealthStatusSerializer,
    RingHealthQuerySerializer,
    RingHealthSerializer,
    RingSeriesQuerySerializer,
    RingSeriesSerializer,
)
from telemetry.models import HealthCheck
from telemetry.permissions import (
    NOT_YOURS,
    CanReadHealth,
    CanReportHealth,
    reporting_device,
    resolve_reporters,
)
from telemetry.services import health_ingest, health_ingest_batch

RING_MAX_LENGTH = HealthCheck._meta.get_field("ring").max_length

ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="No credential, or a bad or revoked one."),
    403: OpenApiResponse(ErrorSerializer, description="The credential may not do this."),
}


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "payload_too_large"


class HealthJSONParser(JSONParser):
    """JSON only (a form post is refused with 415), and deeply nested input is a client error."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the document is nested too deeply.") from None


def _request_body(request):
    try:
        return request.data
    except RequestDataTooBig:
        raise PayloadTooLarge(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        ) from None


class IngestView(APIView):
    """Shared by both ingestion endpoints: who may report, and how bodies are read."""

    authentication_classes = [DeviceAuthentication, TokenAuthentication, SessionAuthentication]
    permission_classes = [CanReportHealth]
    parser_classes = [HealthJSONParser]


class HealthCheckView(IngestView):
    throttle_classes = [HealthThrottle]

    @extend_schema(
        operation_id="health_report",
        summary="Report one health check",
        description=(
            "A device reports for itself ('Authorization: Device <token>'); a gateway holding the "
            "ingest permission reports for any enrolled device. The ring stored is the one SafeRoll "
            "knows for the device. A retried check (same device and timestamp) is stored once."
        ),
        tags=["health"],
        request=HealthCheckInputSerializer,
        responses={
            200: HealthStatusSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Invalid input, field by field."),
            **ERRORS,
            429: THROTTLED_RESPONSE,
        },
    )
    def post(self, request):
        try:
            device, report = self._accepted_check(request)
        # A body that is not JSON or too large is refused before any check is read: not counted.
        except (exceptions.ValidationError, exceptions.PermissionDenied):
            metrics.record_rejected(1)
            raise
        health_ingest(device=device, report=report)
        return Response({"status": "ok"})

    def _accepted_check(self, request):
        """The reporting device and its check, or the 400 or 403 that refuses them."""
        serializer = HealthCheckInputSerializer(data=_request_body(request))
        serializer.is_valid(raise_exception=True)
        device_id = serializer.validated_data["device_id"]
        reporters = resolve_reporters(device=reporting_device(request), device_ids=[device_id])
        if device_id in reporters.forbidden:
            raise exceptions.PermissionDenied(
                f"{NOT_YOURS} This credential belongs to '{request.auth.device_id}', not '{device_id}'."
            )
        if device_id in reporters.unknown:
            raise exceptions.ValidationError({"device_id": [reporters.refusal(device_id)]})
        return reporters.devices[device_id], serializer.to_report()


class HealthBatchView(IngestView):
    throttle_classes = [HealthBatchThrottle]

    @extend_schema(
        operation_id="health_report_batch",
        summary="Report many health checks",
        description=(
            "The body is {'checks': [...]} or a bare list, at most SAFEROLL_HEALTH_BATCH_MAX checks. "
            "Each check is validated on its own: valid ones are stored, the others are listed in "
            "'rejected' with their index and errors. A device may send only its own checks; a "
            "gateway holding the ingest permission, those of any enrolled device. Two checks of a "
            "device without timestamps get the same server time and so count as one."
        ),
        tags=["health"],
        request=HealthBatchInputSerializer,
        responses={
            200: HealthBatchResultSerializer,
            400: OpenApiResponse(
                HealthBatchErrorSerializer, description="Malformed or empty batch, or no valid check."
            ),
            413: OpenApiResponse(ErrorSerializer, description="More checks than a batch may hold."),
            **ERRORS,
            429: THROTTLED_RESPONSE,
        },
    )
    def post(self, request):
        items = _batch_items(_request_body(request))
        rejected = []
        valid = []
        for index, item in enumerate(items):
            serializer = HealthCheckInputSerializer(data=item)
            if serializer.is_valid():
                valid.append((index, serializer))
            else:
                rejected.append(_rejection(index, _raw_device_id(item), serializer.errors))

        reporters = resolve_reporters(
            device=reporting_device(request),
            device_ids={serializer.validated_data["device_id"] for _, serializer in valid},
        )
        checks = []
        for index, serializer in valid:
            device_id = serializer.validated_data["device_id"]
            refusal = reporters.refusal(device_id)
            if refusal:
                rejected.append(_rejection(index, device_id, {"device_id": [refusal]}))
            else:
                checks.append((reporters.devices[device_id], serializer.to_report()))
        rejected.sort(key=lambda entry: entry["index"])
        metrics.record_rejected(len(rejected))

        if not checks:
            return error_response(
                f"None of the {len(items)} checks was accepted; see 'rejected' for why.",
                accepted=0,
                duplicates=0,
                rejected=rejected,
            )
        result = health_ingest_batch(checks=checks)
        return Response({"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected})


def _batch_items(body) -> list:
    """The list of checks from either body shape, with the batch-level limits applied."""
    if isinstance(body, dict):
        if "checks" not in body:
            raise exceptions.ValidationError({"checks": ["This field is required."]})
        body = body["checks"]
    if not isinstance(body, list):
        raise exceptions.ValidationError({"checks": ["Expected a list of health checks."]})
    if not body:
        raise exceptions.ValidationError({"checks": ["The batch is empty: send at least one check."]})
    limit = settings.SAFEROLL_HEALTH_BATCH_MAX
    if len(body) > limit:
        raise PayloadTooLarge(
            f"A batch holds at most {limit} checks and this one has {len(body)}; split it into smaller batches."
        )
    return body


def _raw_device_id(item) -> str | None:
    value = item.get("device_id") if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


def _rejection(index: int, device_id: str | None, errors: dict) -> dict:
    return {"index": index, "device_id": device_id, "errors": errors}


class RingHealthView(APIView):
    permission_classes = [CanReadHealth]

    @extend_schema(
        operation_id="health_ring",
        summary="Aggregated health of a ring",
        description=(
            "Over the last window_minutes of receive time: distinct reporting devices, mean "
            "crash-free rate, boot success share and median check-in latency, and the mean of each "
            "custom metric asked for in `metrics`. An empty window "
            "reads as the default healthy values with total_devices 0; reporting_rate shows the "
            "silence."
        ),
        tags=["health"],
        parameters=[RingHealthQuerySerializer],
        responses={
            200: RingHealthSerializer,
            400: ErrorSerializer,
            404: OpenApiResponse(ErrorSerializer, description="No such ring."),
            **ERRORS,
        },
    )
    def get(self, request, ring: str):
        query = RingHealthQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        _require_ring(ring)
        health = selectors.ring_health(
            ring,
            window_minutes=query.validated_data["window_minutes"],
            version=query.validated_data.get("version") or None,
            metrics=query.validated_data.get("metrics") or (),
        )
        return Response(RingHealthSerializer(health.to_dict()).data)


class RingSeriesView(APIView):
    permission_classes = [CanReadHealth]

    @extend_schema(
        operation_id="health_ring_series",
        summary="Per-minute health of a ring, for a chart",
        tags=["health"],
        parameters=[RingSeriesQuerySerializer],
        responses={
            200: RingSeriesSerializer,
            400: ErrorSerializer,
            404: OpenApiResponse(ErrorSerializer, description="No such ring."),
            **ERRORS,
        },
    )
    def get(self, request, ring: str):
        query = RingSeriesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        _require_ring(ring)
        minutes = query.validated_data["minutes"]
        points = selectors.ring_series(
            ring=ring,
            version=query.validated_data.get("version") or None,
            minutes=minutes,
            metrics=query.validated_data.get("metrics") or (),
        )
        return Response(
            RingSeriesSerializer(
                {"ring": ring, "minutes": minutes, "points": [point.to_dict() for point in points]}
            ).data
        )


def _require_ring(ring: str) -> None:
    # A name no ring can have (too long for the column, or with a NUL, which PostgreSQL refuses
    # in any text) is answered without asking the database.
    too_long = RING_MAX_LENGTH is not None and len(ring) > RING_MAX_LENGTH
    if too_long or "\x00" in ring or not selectors.known_ring(ring):
        raise exceptions.NotFound(f"There is no ring named '{ring}'.")


urlpatterns = [
    path("health", HealthCheckView.as_view(), name="health-report"),
    path("health/batch", HealthBatchView.as_view(), name="health-report-batch"),
    path("health/ring/<str:ring>", RingHealthView.as_view(), name="health-ring"),
    path("health/ring/<str:ring>/series", RingSeriesView.as_view(), name="health-ring-series"),
]
