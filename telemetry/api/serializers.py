"""Input and output shapes of the health API (000 §5.1, SPEC §4).

Input fields are strict about JSON types: devices are machines, and a check whose `boot_ok` is
"maybe" or whose `crash_free` is "high" is a bug on the device that should be reported, not
guessed at. Integer ceilings are those of the database columns, so no value reaches the database
that it would refuse.
"""

import math

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from saferoll.core.api.schema import ErrorSerializer
from telemetry.health import MAX_METRICS, metric_name_problem, metric_value_problem
from telemetry.services import HealthReport

# PositiveIntegerField is a 32-bit integer column on PostgreSQL.
INT_COLUMN_MAX = 2_147_483_647


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be a JSON boolean: true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictFloatField(serializers.FloatField):
    default_error_messages = {"invalid": "Must be a number."}

    def to_internal_value(self, data):
        # A JSON integer of a few hundred digits is a Python int no float holds: refused like NaN.
        if metric_value_problem("", data):
            self.fail("invalid")
        return float(data)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Must be a whole number."}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_value", INT_COLUMN_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if isinstance(data, float) and not (math.isfinite(data) and data.is_integer()):
            self.fail("invalid")
        return int(data)


class StrictCharField(serializers.CharField):
    default_error_messages = {
        "invalid": "Must be a string.",
        "unicode": "Must be valid Unicode text.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            # JSON may carry lone surrogates ("\\ud800"), which no database can store.
            data.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("unicode")
        return super().to_internal_value(data)


@extend_schema_field(
    {"type": "object", "additionalProperties": {"type": "number"}, "maxProperties": MAX_METRICS}
)
class MetricsField(serializers.Field):
    """Custom KPIs: an object of at most MAX_METRICS {name: number}. Every problem is listed, each
    naming the metric, so a device's developer sees at once what to fix."""

    default_error_messages = {
        "not_object": "Must be a JSON object of {{name: number}}.",
        "too_many": f"At most {MAX_METRICS} metrics per check; this one has {{count}}.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", f"Custom KPIs: at most {MAX_METRICS} {{name: number}}.")
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_object")
        if len(data) > MAX_METRICS:
            self.fail("too_many", count=len(data))
        problems = [
            problem
            for name, value in data.items()
            if (problem := metric_name_problem(name) or metric_value_problem(name, value))
        ]
        if problems:
            raise serializers.ValidationError(problems)
        return {name: float(value) for name, value in data.items()}

    def to_representation(self, value):
        return value


class RoundedFloatField(serializers.FloatField):
    """Output only: rates to four places, milliseconds to one, so 0.99 and 0.98 average to 0.985."""

    def __init__(self, *, places: int, **kwargs):
        self.places = places
        super().__init__(**kwargs)

    def to_representation(self, value):
        return round(float(value), self.places)


class HealthCheckInputSerializer(serializers.Serializer):
    """One health check as a device sends it. Unknown fields are ignored."""

    # Not trimmed: a device id is matched exactly.
    device_id = StrictCharField(max_length=50, trim_whitespace=False)
    # Required by the contract, but the server's ring for the device is what is stored.
    ring = StrictCharField(
        max_length=20, help_text="Ignored: the ring SafeRoll knows for the device is stored."
    )
    version = StrictCharField(
        max_length=50,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="The app version running; omitted means the version SafeRoll knows for the device.",
    )
    boot_ok = StrictBooleanField()
    crash_free = StrictFloatField(min_value=0, max_value=1)
    checkin_latency_ms = StrictIntegerField(min_value=0)
    timestamp = serializers.DateTimeField(
        required=False, allow_null=True, help_text="ISO 8601, the device's clock; omitted means now."
    )
    availability = StrictFloatField(min_value=0, max_value=1, required=False, allow_null=True)
    event_lag_ms = StrictIntegerField(min_value=0, required=False, allow_null=True)
    dropped_events = StrictIntegerField(min_value=0, required=False, allow_null=True)
    metrics = MetricsField(required=False, allow_null=True)

    def to_report(self) -> HealthReport:
        data = self.validated_data
        return HealthReport(
            boot_ok=data["boot_ok"],
            crash_free=data["crash_free"],
            checkin_latency_ms=data["checkin_latency_ms"],
            version=data.get("version") or None,
            timestamp=data.get("timestamp"),
            availability=data.get("availability"),
            event_lag_ms=data.get("event_lag_ms"),
            dropped_events=data.get("dropped_events"),
            metrics=data.get("metrics") or {},
        )


class HealthBatchInputSerializer(serializers.Serializer):
    """Documents the batch body; the view validates each item on its own."""

    checks = HealthCheckInputSerializer(many=True, help_text="A bare JSON list of checks is accepted too.")


class HealthStatusSerializer(serializers.Serializer):
    status = serializers.CharField(default="ok")


class RejectedCheckSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the check in the batch, from 0.")
    device_id = serializers.CharField(allow_null=True)
    # DRF's serializer metaclass takes declared fields out of the class, so a field named like a
    # Serializer attribute (errors here, fields below) does not replace it; the stubs cannot say so.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
    )


class HealthBatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Checks stored by this request.")
    duplicates = serializers.IntegerField(
        help_text="Valid checks already stored (retries); not stored again."
    )
    rejected = RejectedCheckSerializer(many=True)


class HealthBatchErrorSerializer(ErrorSerializer):
    """A malformed batch (error and fields), or one whose every check was refused (error, accepted,
    duplicates and rejected)."""

    accepted = serializers.IntegerField(required=False, help_text="0: no check was stored.")
    duplicates = serializers.IntegerField(required=False)
    rejected = RejectedCheckSerializer(many=True, required=False)


class MetricNamesField(serializers.CharField):
    """Query parameter: custom metric names, comma-separated, as a list."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("help_text", f"Custom metrics to average, comma-separated (at most {MAX_METRICS}).")
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        names = [name.strip() for name in super().to_internal_value(data).split(",") if name.strip()]
        if len(names) > MAX_METRICS:
            raise serializers.ValidationError(f"At most {MAX_METRICS} metrics; {len(names)} were asked for.")
        problems = [problem for name in names if (problem := metric_name_problem(name))]
        if problems:
            raise serializers.ValidationError(problems)
        return list(dict.fromkeys(names))


class MetricMeansField(serializers.DictField):
    """Output only: custom metric means by name; a metric nobody reported is left out."""

    def __init__(self, **kwargs):
        kwargs.setdefault("child", RoundedFloatField(places=4))
        kwargs.setdefault(
            "help_text", "Mean of each custom metric asked for; one nobody reported is left out."
        )
        super().__init__(**kwargs)


class RingHealthQuerySerializer(serializers.Serializer):
    window_minutes = serializers.IntegerField(min_value=1, max_value=60, default=5)
    version = serializers.CharField(max_length=50, required=False, allow_blank=True)
    metrics = MetricNamesField()


class RingHealthSerializer(serializers.Serializer):
    ring = serializers.CharField()
    total_devices = serializers.IntegerField(help_text="Distinct devices that reported in the window.")
    crash_free_rate = RoundedFloatField(places=4)
    boot_success_rate = RoundedFloatField(places=4)
    median_latency_ms = RoundedFloatField(places=1)
    window_minutes = serializers.IntegerField()
    expected_devices = serializers.IntegerField(
        allow_null=True, help_text="Devices of the ring (running `version`, when given)."
    )
    reporting_rate = RoundedFloatField(
        places=4,
        allow_null=True,
        help_text="total_devices / expected_devices, at most 1; null when none expected.",
    )
    metrics = MetricMeansField()


class RingSeriesQuerySerializer(serializers.Serializer):
    minutes = serializers.IntegerField(min_value=10, max_value=60, default=30)
    version = serializers.CharField(max_length=50, required=False, allow_blank=True)
    metrics = MetricNamesField()


class SeriesPointSerializer(serializers.Serializer):
    minute = serializers.DateTimeField(help_text="Start of the minute, on the server's receive clock.")
    total_devices = serializers.IntegerField()
    crash_free_rate = RoundedFloatField(places=4, allow_null=True)
    boot_success_rate = RoundedFloatField(places=4, allow_null=True)
    median_latency_ms = RoundedFloatField(places=1, allow_null=True)
    metrics = MetricMeansField()


class RingSeriesSerializer(serializers.Serializer):
    ring = serializers.CharField()
    minutes = serializers.IntegerField()
    points = SeriesPointSerializer(
        many=True, help_text="One point per minute, oldest first; metrics are null when nobody reported."
    )
