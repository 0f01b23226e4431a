"""SafeRoll settings: one module, read from the environment.

With no configuration SafeRoll runs embedded: SQLite in a local file, an in-memory broker and
channel layer, and a secret generated on first run. Setting DATABASE_URL switches to production
mode, where SAFEROLL_SECRET_KEY and ALLOWED_HOSTS must be given explicitly.
"""

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from saferoll.env import env_bool, env_float, env_int, env_list, env_ring_shares, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(env_str("SAFEROLL_STATE_DIR", str(BASE_DIR / ".saferoll")))

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
EMBEDDED = not DATABASE_URL

DEBUG = env_bool("SAFEROLL_DEBUG", default=False)


def _embedded_secret_key() -> str:
    """Generate the embedded default's secret once and keep it beside the database."""
    path = STATE_DIR / "secret_key"
    if not path.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SAFEROLL_SECRET_KEY")
if not SECRET_KEY:
    if not EMBEDDED:
        raise ImproperlyConfigured("SAFEROLL_SECRET_KEY is required when DATABASE_URL is set.")
    SECRET_KEY = _embedded_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "saferoll",
    "devices",
    "rollouts",
    "telemetry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "saferoll.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "saferoll.urls"
WSGI_APPLICATION = "saferoll.wsgi.application"
ASGI_APPLICATION = "saferoll.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if EMBEDDED:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": STATE_DIR / "saferoll.sqlite3",
            "OPTIONS": {
                # WAL lets readers run beside the single writer; IMMEDIATE takes the write
                # lock at BEGIN, so a transaction never fails half-way on a lock upgrade.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
else:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    if env_bool("SAFEROLL_DB_POOL", default=True):
        # Under an ASGI server persistent connections are not reused; the pool is what keeps
        # the connection count bounded (Django's built-in psycopg pool; CONN_MAX_AGE must be 0).
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"] = {
            "pool": {
                "min_size": 2,
                "max_size": env_int("SAFEROLL_DB_POOL_SIZE", 20, minimum=1),
                "timeout": 10,
            }
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = STATE_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("SAFEROLL_MEDIA_ROOT", str(STATE_DIR / "media")))
# Static files are served from the apps' folders directly, so no collectstatic step is needed.
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/admin/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "saferoll.api.pagination.StandardPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "saferoll.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "SafeRoll API",
    "DESCRIPTION": "Progressive rollouts for device fleets: health ingestion, SLO gates, rollouts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("SAFEROLL_LOG_LEVEL", "INFO")},
}

# --- SafeRoll ----------------------------------------------------------------------------------

SAFEROLL_VERSION = "1.0.0"
# The fleet key a new device presents to enroll itself.
SAFEROLL_ENROLLMENT_KEY = env_str("SAFEROLL_ENROLLMENT_KEY")
if not SAFEROLL_ENROLLMENT_KEY:
    if not EMBEDDED:
        raise ImproperlyConfigured("SAFEROLL_ENROLLMENT_KEY is required when DATABASE_URL is set.")
    SAFEROLL_ENROLLMENT_KEY = "embedded-" + SECRET_KEY[:24]
# Rings of the fleet in rollout order, with the share of new devices each receives (000 §8.2).
SAFEROLL_RING_SHARES = env_ring_shares(
    "SAFEROLL_RING_SHARES", {"pilot": 10, "ring_5": 5, "ring_25": 25, "ring_100": 60}
)
# Largest number of checks accepted in one POST /api/health/batch.
SAFEROLL_HEALTH_BATCH_MAX = env_int("SAFEROLL_HEALTH_BATCH_MAX", 1000, minimum=1)
# A device's last_heartbeat is refreshed at most this often, to spare one write per check.
SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS = env_float("SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS", 15, minimum=0)
