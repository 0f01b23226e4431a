"""Serializer fields that the apps' APIs share."""

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
