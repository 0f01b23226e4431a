"""Filters that the apps' FilterSets share (the API, the pages and the tests use the same FilterSets)."""

import datetime as dt

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 moment, handed to the database in UTC.

    Python accepts UTC offsets up to ±23:59 but PostgreSQL only up to ±15:59, so a moment is
    never sent with the client's offset. Near year 1 or 9999, moving it to UTC can leave the
    calendar Python knows: the client is told, instead of the query failing."""

    default_error_messages = {
        "out_of_range": "This moment falls outside the years 1 to 9999 once converted to UTC.",
    }

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(dt.UTC)
        except OverflowError:
            raise forms.ValidationError(self.error_messages["out_of_range"], code="out_of_range") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """IsoDateTimeFilter whose value reaches the database in UTC (see UtcDateTimeField)."""

    field_class = UtcDateTimeField
