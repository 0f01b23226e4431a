"""SafeRoll settings: one module, read from the environment.

With no configuration SafeRoll runs embedded: SQLite in a local file, an in-memory broker and
channel layer, and a secret generated on first run. Setting DATABASE_URL switches to production
mode, where SAFEROLL_SECRET_KEY and ALLOWED_HOSTS must be given explicitly.
"""

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from saferoll.core.env import env_bool, env_float, env_int, env_list, env_rate, env_ring_shares, env_str

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
    "channels",
    "saferoll.core",
    "devices",
    "rollouts",
    "telemetry",
    "saferoll.portal",
    "simulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "saferoll.core.middleware.NulInPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "saferoll.core.middleware.DatabaseUnavailableMiddleware",
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
    DATABASES: dict[str, dj_database_url.DBConfig] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(STATE_DIR / "saferoll.sqlite3"),
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
STATIC_ROOT = Path(env_str("SAFEROLL_STATIC_ROOT", str(STATE_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("SAFEROLL_MEDIA_ROOT", str(STATE_DIR / "media")))
# Static files are served from the apps' folders directly, so no collectstatic step is needed.
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:dashboard"

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
    "DEFAULT_PAGINATION_CLASS": "saferoll.core.api.pagination.StandardPagination",
    "DEFAULT_SCHEMA_CLASS": "saferoll.core.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "saferoll.core.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "SafeRoll API",
    "DESCRIPTION": "Progressive rollouts for device fleets: health ingestion, SLO gates, rollouts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a "state" or "status"; name each enum after its choices class.
    "ENUM_NAME_OVERRIDES": {
        "DeploymentStateEnum": "rollouts.choices.DeploymentState",
        "DeviceStatusEnum": "devices.choices.DeviceStatus",
        "RolloutStatusEnum": "rollouts.choices.RolloutStatus",
        "IncidentStatusEnum": "rollouts.choices.IncidentStatus",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("SAFEROLL_LOG_LEVEL", "INFO")},
    # One line per task received and done every few seconds drowns what matters; failures still show.
    "loggers": {
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
    },
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

# --- Rate limits (saferoll.core.ratelimits, saferoll.core.api.throttles) ---------------------------------

# Reverse proxies in front of SafeRoll (0: clients connect to it directly). Behind them the client's
# address is read from X-Forwarded-For (saferoll.core.ratelimits) and HTTPS from X-Forwarded-Proto, which
# the proxies must set, overwriting whatever the client sent.
SAFEROLL_TRUSTED_PROXIES = env_int("SAFEROLL_TRUSTED_PROXIES", 0, minimum=0)

# Far above what a fleet sends (a check every 5 s, the desired state every 15-60 s, the demo's
# 8 site gateways each posting a batch every 5 s with one account, 1,000 devices enrolling at
# once from one address): they stop a runaway or hostile client, not a busy one.
SAFEROLL_THROTTLE_RATES = {
    # POST /api/health, per device (or per account reporting for devices).
    "health": env_rate("SAFEROLL_THROTTLE_HEALTH", "120/minute"),
    # POST /api/health/batch, per device or per account: the gateways of one account share it.
    "health_batch": env_rate("SAFEROLL_THROTTLE_HEALTH_BATCH", "1200/minute"),
    # GET /api/device/desired-state, per device.
    "desired_state": env_rate("SAFEROLL_THROTTLE_DESIRED_STATE", "60/minute"),
    # POST /api/devices/enroll, per client address: a site's devices may all come from one NAT.
    "enroll": env_rate("SAFEROLL_THROTTLE_ENROLL", "1200/minute"),
    # Failed sign-ins to the portal and the admin, per client address and per username.
    "sign_in": env_rate("SAFEROLL_THROTTLE_SIGN_IN", "10/15m"),
}
# The counts are shared by every web process through Redis; in the embedded default there is one
# process, and its memory is enough. Nothing else in SafeRoll uses the cache. Short socket timeouts:
# when Redis is away, limits are skipped (saferoll.core.ratelimits) instead of holding requests up.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "saferoll",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "saferoll"}}
# django_ratelimit is used as a library and not installed as an app: its system check calls the
# embedded default's in-memory cache broken for not being shared between processes (there is one)
# and Django's own RedisCache "not officially supported" (it increments atomically, which is what
# the library needs).

# --- HTTPS and security headers ----------------------------------------------------------------

# Production is served over HTTPS. The embedded default runs on plain http://127.0.0.1, where a
# Secure cookie would never be sent back and nobody could sign in.
SAFEROLL_HTTPS = env_bool("SAFEROLL_HTTPS", default=not EMBEDDED)
if SAFEROLL_TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = SAFEROLL_HTTPS
# Load balancers probe /health, and Prometheus scrapes /metrics, over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]
SESSION_COOKIE_SECURE = SAFEROLL_HTTPS
CSRF_COOKIE_SECURE = SAFEROLL_HTTPS
SECURE_HSTS_SECONDS = env_int("SAFEROLL_HSTS_SECONDS", 365 * 24 * 3600 if SAFEROLL_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("SAFEROLL_HSTS_PRELOAD", default=False)
if SECURE_HSTS_SECONDS and not SECURE_HSTS_PRELOAD:
    # security.W021 asks for "preload": consent to browsers hard-coding HTTPS for the whole
    # registered domain. That is the domain owner's decision (SAFEROLL_HSTS_PRELOAD), not SafeRoll's.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
# No SafeRoll page is meant to be framed or to share its window with another site's. These are
# Django's defaults, said here so that they stay what check --deploy expects.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# --- Live updates (Channels) -------------------------------------------------------------------

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    # In-memory: only reaches sockets of this process, which is all there is in the embedded default.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Autopilot (Celery) ------------------------------------------------------------------------

# Redis when configured; otherwise an in-memory broker that only works inside one process, which is
# exactly the embedded default: `manage.py serve` runs the worker and beat in the web process.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(STATE_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"

SAFEROLL_AUTOPILOT_PERIOD_SECONDS = env_float("SAFEROLL_AUTOPILOT_PERIOD_SECONDS", 10, minimum=0.5)
# The autopilot counts as stale (GET /health says degraded) after this many periods without a round.
SAFEROLL_AUTOPILOT_STALE_PERIODS = env_int("SAFEROLL_AUTOPILOT_STALE_PERIODS", 6, minimum=2)
# A deployment step older than this fails (001 "update stuck": 15 minutes).
SAFEROLL_DEPLOYMENT_STEP_TIMEOUT_SECONDS = env_int(
    "SAFEROLL_DEPLOYMENT_STEP_TIMEOUT_SECONDS", 15 * 60, minimum=1
)
# A device not back on the stable release this long after a rollback is flagged (002 D11).
SAFEROLL_ROLLBACK_TARGET_SECONDS = env_int("SAFEROLL_ROLLBACK_TARGET_SECONDS", 10 * 60, minimum=1)
# A device that has not checked in for this long is offline.
SAFEROLL_OFFLINE_AFTER_SECONDS = env_int("SAFEROLL_OFFLINE_AFTER_SECONDS", 3 * 60, minimum=1)
# Share of the reporting fleet that must be unhealthy to raise the emergency stop by itself.
SAFEROLL_FLEET_UNHEALTHY_SHARE = env_float("SAFEROLL_FLEET_UNHEALTHY_SHARE", 0.20, minimum=0)
SAFEROLL_FLEET_MIN_DEVICES = env_int("SAFEROLL_FLEET_MIN_DEVICES", 20, minimum=1)
# Raw health checks are kept this long.
SAFEROLL_HEALTH_RETENTION_HOURS = env_int("SAFEROLL_HEALTH_RETENTION_HOURS", 72, minimum=1)
# PostgreSQL keeps raw checks in partitions this wide (telemetry/partitions.py): a partition is
# dropped once all of it is older than the retention, so checks outlive it by up to this much.
SAFEROLL_HEALTH_PARTITION_HOURS = env_int("SAFEROLL_HEALTH_PARTITION_HOURS", 1, minimum=1)
# The per-minute health rollups (what every window is read from) are kept this long: a week by
# default, longer than the raw checks, so a rollout's charts outlive them.
SAFEROLL_HEALTH_ROLLUP_RETENTION_HOURS = env_int("SAFEROLL_HEALTH_ROLLUP_RETENTION_HOURS", 7 * 24, minimum=1)

# --- Metrics (Prometheus) ----------------------------------------------------------------------

# When set, GET /metrics and the worker's metrics port ask for "Authorization: Bearer <token>".
# When unset they are open: keep them off public networks.
SAFEROLL_METRICS_TOKEN = env_str("SAFEROLL_METRICS_TOKEN")
if SAFEROLL_METRICS_TOKEN and len(SAFEROLL_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured(
        "SAFEROLL_METRICS_TOKEN must be at least 16 characters long; make one with "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'."
    )
# A `celery worker` serves its task metrics on this port (0: not served); web processes cannot see them.
SAFEROLL_WORKER_METRICS_PORT = env_int("SAFEROLL_WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)
