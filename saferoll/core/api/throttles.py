"""Rate limits of the endpoints devices and gateways call (SPEC §14), with DRF's throttling.

Each scope's rate is settings.SAFEROLL_THROTTLE_RATES[scope] (SAFEROLL_THROTTLE_* in the
environment). The defaults are far above what a fleet sends: they stop a runaway client, not a
busy one. DRF counts in a sliding window, keeping each client's request times in the default
cache (saferoll.core.ratelimits says which cache, and why it is left alone when unavailable). A
throttled request is answered 429 with Retry-After (saferoll.core.api.errors words the error).
"""

import logging

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from saferoll.core.api.permissions import is_device_credential
from saferoll.core.env import parse_rate
from saferoll.core.ratelimits import client_address

logger = logging.getLogger(__name__)

THROTTLED_RESPONSE = OpenApiResponse(
    description="Too many requests from this client: wait the Retry-After seconds, then try again."
)


class RateThrottle(SimpleRateThrottle):
    """DRF's throttle with SafeRoll's rates, read per request so that they follow the settings."""

    # Every SafeRoll throttle names its scope.
    scope: str
    # Set by SimpleRateThrottle.__init__ from the rate; the stubs leave them out.
    num_requests: int | None
    duration: int | None

    def get_rate(self) -> str:
        return settings.SAFEROLL_THROTTLE_RATES[self.scope]

    def parse_rate(self, rate):
        return parse_rate(rate) if rate else (None, None)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.client_ident(request)}

    def client_ident(self, request) -> str:
        return f"address-{client_address(request)}"

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError as error:
            logger.warning("%s requests not limited, the cache is unavailable: %s", self.scope, error)
            return True

    def wait(self) -> float:
        # Retry-After is whole seconds and DRF leaves it out when the wait rounds to 0; a rate
        # lowered below a client's recorded requests gives no estimate: a whole period then.
        return max(super().wait() or self.duration or 0, 1)


class CallerThrottle(RateThrottle):
    """Per credential: the device's own, else the account's (a site gateway's service account),
    else the client's address."""

    def client_ident(self, request) -> str:
        if is_device_credential(request.auth):
            return f"device-{request.auth.pk}"
        if request.user and request.user.is_authenticated:
            return f"user-{request.user.pk}"
        return super().client_ident(request)


class HealthThrottle(CallerThrottle):
    """POST /api/health: one check at a time."""

    scope = "health"


class HealthBatchThrottle(CallerThrottle):
    """POST /api/health/batch. Every gateway signed in with one service account shares its count."""

    scope = "health_batch"


class DesiredStateThrottle(CallerThrottle):
    """GET /api/device/desired-state."""

    scope = "desired_state"


class EnrollmentThrottle(RateThrottle):
    """POST /api/devices/enroll, per client address: it is anonymous (the fleet key is the check),
    and limiting it keeps anyone from trying keys at speed."""

    scope = "enroll"
