"""The OpenAPI schema documents the errors every operation can answer, in the API's one error shape.

Views document the refusals particular to them (409 in a state that does not allow an action, 413,
429); the ones below follow from how the API works and are added to every operation they apply to,
so that clients and tools reading the schema expect them:

- 400: the input (body, query, or the request itself) is malformed or invalid;
- 401 and 403: an operation that takes a credential answers without one, or with one not allowed;
- 404: the object a path names does not exist, or a list has no such page;
- 415: a body in a media type the operation does not read.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """{"error": sentence}, with details some errors add (fields, reason, evaluation, ...)."""

    error = serializers.CharField(help_text="A sentence saying what went wrong.")
    # A field's messages are a list of sentences; a list's or an object's, nested by index or key.
    # A declared field, not Serializer.fields: DRF's metaclass takes it off the class.
    fields = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="Field-by-field messages, when the input was invalid."
    )


ERROR_DESCRIPTIONS = {
    "400": "The request is malformed or its input invalid; 'fields' says which input, when one is at fault.",
    "401": "No credential, or a bad or revoked one.",
    "403": "The credential may not do this.",
    "404": "No such object, or no such page of a list.",
    "415": "The body is in a media type this operation does not read.",
}


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        error = {
            "content": {
                "application/json": {"schema": self.resolve_serializer(ErrorSerializer, "response").ref}
            }
        }
        responses = operation["responses"]
        for code in self._possible_errors(operation):
            responses.setdefault(code, {**error, "description": ERROR_DESCRIPTIONS[code]})
        return operation

    def _possible_errors(self, operation: dict) -> list[str]:
        codes = ["400"]
        if operation.get("security"):
            codes += ["401", "403"]
        in_path = any(parameter["in"] == "path" for parameter in operation.get("parameters", []))
        if in_path or self._paginates(operation):
            codes.append("404")
        if "requestBody" in operation:
            codes.append("415")
        return codes

    def _paginates(self, operation: dict) -> bool:
        return any(parameter["name"] == "page" for parameter in operation.get("parameters", []))
