"""HTTPS and security headers (SPEC §14): `check --deploy` is clean with production settings, which
send HSTS and Secure cookies, while the embedded default keeps serving its sign-in over plain HTTP."""

import json
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import Client

# Fetches the sign-in page over HTTPS and over plain HTTP in a fresh interpreter, without a database.
PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.test import Client

def seen(response):
    cookie = response.cookies.get("csrftoken")
    return {
        "status": response.status_code,
        "headers": dict(response.headers),
        "csrf_cookie_secure": bool(cookie["secure"]) if cookie else None,
    }

client = Client(HTTP_HOST="localhost")
print(json.dumps({
    "https": seen(client.get("/login", secure=True)),
    "http": seen(client.get("/login")),
    "session_cookie_secure": settings.SESSION_COOKIE_SECURE,
}))
"""


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=settings.BASE_DIR, capture_output=True, text=True)


def saferoll_env(tmp_path, **env: str) -> dict[str, str]:
    """This process's environment without any SafeRoll setting, plus `env`."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SAFEROLL_") and key not in ("DATABASE_URL", "REDIS_URL")
    }
    return {**base, "DJANGO_SETTINGS_MODULE": "saferoll.settings", "SAFEROLL_STATE_DIR": str(tmp_path), **env}


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    """Production mode as README's configuration describes it; nothing here connects to the servers."""
    return saferoll_env(
        tmp_path,
        DATABASE_URL="postgres://saferoll@127.0.0.1:1/saferoll",
        REDIS_URL="redis://127.0.0.1:1/0",
        SAFEROLL_SECRET_KEY=secrets.token_urlsafe(50),
        SAFEROLL_ENROLLMENT_KEY=secrets.token_urlsafe(32),
        SAFEROLL_DEBUG="false",
        SAFEROLL_DB_POOL="false",
    )


def probe(env: dict[str, str]) -> dict:
    done = run([sys.executable, "-c", PROBE], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("variable", "raw", "error"),
    [
        ("SAFEROLL_HTTPS", "maybe", "SAFEROLL_HTTPS must be a boolean (true/false), not 'maybe'."),
        ("SAFEROLL_HSTS_SECONDS", "a year", "SAFEROLL_HSTS_SECONDS must be an integer, not 'a year'."),
        (
            "SAFEROLL_HSTS_PRELOAD",
            "please",
            "SAFEROLL_HSTS_PRELOAD must be a boolean (true/false), not 'please'.",
        ),
    ],
)
def test_it_refuses_to_start_with_a_bad_https_setting(production_env, variable, raw, error):
    done = run([sys.executable, "-c", "import django; django.setup()"], {**production_env, variable: raw})

    assert done.returncode != 0
    assert f"ImproperlyConfigured: {error}" in done.stderr


def test_check_deploy_finds_nothing_to_report_with_production_settings(production_env):
    done = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"], production_env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout
    assert "WARNING" not in done.stdout + done.stderr


def test_production_sends_hsts_and_secure_cookies_and_redirects_plain_http(production_env):
    seen = probe(production_env)

    https = seen["https"]
    assert https["status"] == 200
    assert https["headers"]["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert https["csrf_cookie_secure"] is True
    assert seen["session_cookie_secure"] is True
    assert seen["http"]["status"] == 301
    assert seen["http"]["headers"]["Location"] == "https://localhost/login"


def test_the_embedded_default_serves_its_sign_in_over_plain_http_with_cookies_not_secure(tmp_path):
    seen = probe(saferoll_env(tmp_path))

    http = seen["http"]
    assert http["status"] == 200
    assert http["csrf_cookie_secure"] is False
    assert seen["session_cookie_secure"] is False
    assert "Strict-Transport-Security" not in http["headers"]
    assert http["headers"]["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/login", "/api/devices", "/health"])
def test_every_response_carries_the_security_headers(url):
    response = Client().get(url)

    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.django_db
def test_with_https_on_plain_http_is_redirected_but_health_probes_are_answered(settings):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()  # a new client builds its middleware from these settings

    assert client.get("/login")["Location"] == "https://testserver/login"
    assert client.get("/health").status_code in (200, 503)
