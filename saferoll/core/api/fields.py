"""Serializer fields that the apps' APIs share."""

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class NamedObjectField(serializers.SlugRelatedField):
    """An object named by one of its text fields: a release by version, a plan by name.

    A name with a NUL character names nothing, and PostgreSQL refuses NUL in any text, so such a
    name is answered "does not exist" without being looked up (the lookup would fail as a server
    error). The NUL is shown escaped, so the message stays printable."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", "\\x00"))
        return super().to_internal_value(data)


# "HH:MM", "HH:MM:SS" or "HH:MM:SS.ffffff", what a TimeField reads and writes without an offset.
TIME_OF_DAY_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$"


@extend_schema_field({"type": "string", "pattern": TIME_OF_DAY_PATTERN, "example": "02:00:00"})
class TimeOfDayField(serializers.TimeField):
    """A time of day in UTC, such as a plan's activation window.

    The schema does not call it format "time": JSON Schema's time (RFC 3339) carries an offset, and
    these are UTC with none. An offset in the input is refused: Django's time parser would drop it,
    silently moving the window."""

    default_error_messages = {
        "offset": "Give the time of day in UTC as HH:MM or HH:MM:SS, without an offset.",
    }

    def to_internal_value(self, value):
        if isinstance(value, str) and not re.fullmatch(TIME_OF_DAY_PATTERN, value):
            self.fail("offset")
        return super().to_internal_value(value)
