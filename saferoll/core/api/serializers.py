"""Serializer bases shared by every app's API."""

from rest_framework import serializers
from rest_framework.exceptions import ValidationError


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know, rather than ignoring a typo."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise ValidationError({field: ["Unknown field."] for field in unknown})
        return super().to_internal_value(data)
