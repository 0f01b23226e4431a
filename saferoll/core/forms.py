"""Sign-in forms of the portal and the admin, limited by saferoll.core.ratelimits."""

from functools import wraps

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpResponse

from saferoll.core.ratelimits import sign_in_failed, sign_in_wait, wait_in_words

LOCKED_OUT = "sign_in_locked"
# The code AuthenticationForm gives a wrong username or password.
INVALID_LOGIN = "invalid_login"


class SignInLimitMixin(AuthenticationForm):
    """While the client or the username has failed too often, a sign-in is refused before its
    password is checked; each wrong username or password counts one failure. For the portal's
    AuthenticationForm and the admin's AdminAuthenticationForm (a subclass of it)."""

    retry_after = 0

    def clean(self):
        if self.request is None:
            return super().clean()
        username = str(self.data.get("username", ""))
        self.retry_after = sign_in_wait(self.request, username)
        if self.retry_after:
            raise ValidationError(
                "Too many failed sign-ins from this address or for this username. "
                f"Wait {wait_in_words(self.retry_after)}, then try again.",
                code=LOCKED_OUT,
            )
        try:
            return super().clean()
        except ValidationError as error:
            if error.code == INVALID_LOGIN:
                sign_in_failed(self.request, username)
            raise


class SignInForm(SignInLimitMixin, AuthenticationForm):
    pass


class AdminSignInForm(SignInLimitMixin, AdminAuthenticationForm):
    pass


def locked_out_status(response: HttpResponse, form) -> HttpResponse:
    """429 with Retry-After when the form refused a locked-out sign-in; the response otherwise."""
    if getattr(form, "retry_after", 0):
        response.status_code = 429
        response["Retry-After"] = str(form.retry_after)
    return response


def locked_out_login(login_view):
    """A login view (the admin's) whose locked-out refusals are answered 429."""

    @wraps(login_view)
    def view(request, *args, **kwargs):
        response = login_view(request, *args, **kwargs)
        form = (getattr(response, "context_data", None) or {}).get("form")
        return locked_out_status(response, form)

    return view
