"""Failed sign-ins are limited per client address and per username (SPEC §14): once either has
failed too often, the portal's and the admin's sign-in answer 429 with a sentence that says to
wait, without checking the password, until the window ends."""

import re
from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.contrib.auth import forms as auth_forms
from django.test import Client
from django.urls import reverse

from saferoll.core import roles
from tests.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = reverse("portal:login")
ADMIN_LOGIN = reverse("admin:login")
WINDOW_SECONDS = 15 * 60
LOCKED = re.compile(
    r"Too many failed sign-ins from this address or for this username\. "
    r"Wait (\d+) minutes?, then try again\."
)


@pytest.fixture(autouse=True)
def three_failures_allowed(rate_limits):
    rate_limits(sign_in="3/15m")


@pytest.fixture
def checked_passwords(monkeypatch):
    """The usernames whose password the sign-in form checked."""
    checked = []
    authenticate = auth_forms.authenticate

    def spy(request=None, **credentials):
        checked.append(credentials.get("username"))
        return authenticate(request, **credentials)

    monkeypatch.setattr(auth_forms, "authenticate", spy)
    return checked


def sign_in(username: str, password: str, *, address: str = "10.0.0.1", url: str = LOGIN):
    client = Client(REMOTE_ADDR=address)
    response = client.post(url, {"username": username, "password": password})
    response.client = client
    return response


def fail(times: int, username: str = "vera", address: str = "10.0.0.1") -> None:
    for _ in range(times):
        assert sign_in(username, "wrong", address=address).status_code == 200


def signed_in(response) -> bool:
    return "_auth_user_id" in response.client.session


def assert_locked(response) -> None:
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 1 <= wait <= WINDOW_SECONDS
    minutes = int(LOCKED.search(response.content.decode()).group(1))
    assert minutes * 60 >= wait > (minutes - 1) * 60
    assert not signed_in(response)


def test_after_too_many_failures_even_the_right_password_is_refused_unchecked(make_user, checked_passwords):
    make_user(roles.VIEWER, username="vera")
    fail(3)
    checked_passwords.clear()

    response = sign_in("vera", PASSWORD)

    assert_locked(response)
    assert checked_passwords == []


def test_the_page_says_to_wait_in_the_form(make_user):
    make_user(roles.VIEWER, username="vera")
    fail(3)

    html = sign_in("vera", "wrong").content.decode()

    alert = html.split('role="alert"')[1].split("</div>")[0]
    assert LOCKED.search(alert)


def test_failures_below_the_limit_leave_sign_in_open(make_user):
    make_user(roles.VIEWER, username="vera")
    fail(2)

    response = sign_in("vera", PASSWORD)

    assert response.status_code == 302
    assert signed_in(response)


def test_only_failed_sign_ins_count(make_user):
    make_user(roles.VIEWER, username="vera")

    for _ in range(5):
        response = sign_in("vera", PASSWORD)
        assert response.status_code == 302

    fail(2)
    assert sign_in("vera", PASSWORD).status_code == 302


def test_an_incomplete_form_is_not_a_failed_sign_in(make_user):
    make_user(roles.VIEWER, username="vera")

    for _ in range(5):
        assert Client().post(LOGIN, {"username": "vera"}).status_code == 200

    assert sign_in("vera", PASSWORD).status_code == 302


def test_a_username_is_locked_whatever_address_its_failures_came_from(make_user):
    make_user(roles.VIEWER, username="vera")
    make_user(roles.VIEWER, username="otto")
    for index in range(3):
        fail(1, username="vera", address=f"10.0.1.{index}")

    assert_locked(sign_in("vera", PASSWORD, address="10.0.2.1"))
    assert sign_in("otto", PASSWORD, address="10.0.2.1").status_code == 302


def test_an_address_is_locked_whatever_usernames_it_tried(make_user):
    make_user(roles.VIEWER, username="vera")
    for name in ("root", "admin", "guest"):
        fail(1, username=name, address="10.0.0.9")

    assert_locked(sign_in("vera", PASSWORD, address="10.0.0.9"))
    assert sign_in("vera", PASSWORD, address="10.0.0.10").status_code == 302


def test_a_username_in_other_capitals_shares_the_count(make_user):
    make_user(roles.VIEWER, username="vera")
    for index, spelling in enumerate(("Vera", "VERA", "vera ")):
        fail(1, username=spelling, address=f"10.0.1.{index}")

    assert_locked(sign_in("vera", PASSWORD, address="10.0.2.1"))


def test_sign_in_opens_again_once_the_window_has_ended(make_user, monkeypatch):
    make_user(roles.VIEWER, username="vera")
    fail(3)
    assert_locked(sign_in("vera", PASSWORD))

    later = django_ratelimit.core.time.time() + WINDOW_SECONDS
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: later))

    response = sign_in("vera", PASSWORD)
    assert response.status_code == 302
    assert signed_in(response)


def test_sign_in_is_not_limited_while_the_cache_is_unreachable(make_user, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    make_user(roles.VIEWER, username="vera")
    fail(4)

    assert sign_in("vera", PASSWORD).status_code == 302


def test_the_admin_sign_in_is_limited_too(make_user, checked_passwords):
    make_user(roles.ADMIN, username="ada")
    for _ in range(3):
        assert sign_in("ada", "wrong", url=ADMIN_LOGIN).status_code == 200
    checked_passwords.clear()

    response = sign_in("ada", PASSWORD, url=ADMIN_LOGIN)

    assert_locked(response)
    assert checked_passwords == []


def test_failures_on_the_admin_and_the_portal_add_up(make_user):
    make_user(roles.ADMIN, username="ada")
    sign_in("ada", "wrong", url=ADMIN_LOGIN)
    sign_in("ada", "wrong", url=ADMIN_LOGIN)
    sign_in("ada", "wrong")

    assert_locked(sign_in("ada", PASSWORD))
