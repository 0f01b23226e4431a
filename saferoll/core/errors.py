"""The one refusal every service raises. The API translates it once (saferoll.core.api.errors),
the admin and the portal once (saferoll.core.admin.ServiceRefusalsMixin, saferoll.portal.views)."""

BAD_INPUT = 400
NOT_FOUND = 404
CONFLICT = 409


class ServiceRefused(Exception):
    """A change a service will not make, with the sentence that says why.

    `status` is the HTTP status it stands for: BAD_INPUT (the input is wrong; `field` names it when
    one field is at fault), NOT_FOUND (the object is not there), CONFLICT (the object's state does not
    allow it). `errors` holds the messages field by field (`field` alone makes it {field: [message]}).
    `extra` is detail an API answer adds to the sentence, such as the gates' evaluation."""

    def __init__(
        self,
        message: str,
        *,
        status: int = CONFLICT,
        field: str | None = None,
        errors: dict[str, list[str]] | None = None,
        **extra,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors if errors is not None else ({field: [message]} if field else {})
        self.extra = extra

    def sentences(self) -> str:
        """Everything it says, for a page: the field-by-field messages, else the sentence."""
        if self.errors:
            return " ".join(message for messages in self.errors.values() for message in messages)
        return self.message


def bad_input(message: str, *, field: str | None = None) -> ServiceRefused:
    return ServiceRefused(message, status=BAD_INPUT, field=field)


def invalid(errors: dict[str, list[str]]) -> ServiceRefused:
    """Input refused field by field, several fields at once."""
    return ServiceRefused("Invalid input.", status=BAD_INPUT, errors=errors)


def not_found(message: str) -> ServiceRefused:
    return ServiceRefused(message, status=NOT_FOUND)
