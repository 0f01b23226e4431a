"""Rate limits (SPEC §14): who a client is, and how many failed sign-ins it may make.

Counts live in Django's default cache: Redis when REDIS_URL is set, so that every web process
shares them; this process's memory in the embedded default, which is one process. When the cache
cannot be reached the limits are not applied, rather than requests refused: ingestion goes on
while Redis is away (SPEC §14), and so must signing in to press the emergency stop.

Sign-in counts only failed attempts (a wrong username or password), per client address and per
username, in fixed windows (django-ratelimit's): once either has failed the allowed number of
times, sign-ins are refused unchecked until that window ends.
"""

import ipaddress
import logging
import math

from django.conf import settings
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

from saferoll.core.env import parse_rate

logger = logging.getLogger(__name__)

SIGN_IN_GROUP = "saferoll.sign-in"
# An IPv6 client usually holds a whole /64: counting its addresses one by one would not limit it.
IPV6_PREFIX = 64


def client_address(request) -> str:
    """The client's IP address, an IPv6 client's as its /64 network.

    With SAFEROLL_TRUSTED_PROXIES proxies in front, the address the outermost of them saw: each
    proxy appends its peer to X-Forwarded-For, so it is counted from the right; entries further
    left are whatever the client wrote.
    """
    address = request.META.get("REMOTE_ADDR", "")
    proxies = settings.SAFEROLL_TRUSTED_PROXIES
    forwarded = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [hop for hop in forwarded if hop]
    if proxies and forwarded:
        address = forwarded[-min(proxies, len(forwarded))]
    return _counted_address(address)


def _counted_address(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        # No usable address (a Unix socket peer, a proxy that was not expected): one shared count.
        return "unknown"
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False).network_address)
    return str(ip)


def sign_in_wait(request, username: str) -> int:
    """Seconds before this client, or anyone with this username, may try to sign in again (0: now)."""
    allowed, _ = _sign_in_rate()
    waits = [0]
    for key in _sign_in_keys(request, username):
        usage = _usage(request, key, increment=False)
        if usage is not None and usage["count"] >= allowed:
            waits.append(max(usage["time_left"], 1))
    return max(waits)


def sign_in_failed(request, username: str) -> None:
    """Count one failed sign-in against the client's address and against the username."""
    for key in _sign_in_keys(request, username):
        _usage(request, key, increment=True)


def wait_in_words(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _sign_in_rate() -> tuple[int, int]:
    return parse_rate(settings.SAFEROLL_THROTTLE_RATES["sign_in"])


def _sign_in_keys(request, username: str) -> list[str]:
    keys = [f"address:{client_address(request)}"]
    # Usernames are matched exactly when signing in; "Admin" and "admin" still share a count.
    username = username.strip().casefold()
    if username:
        keys.append(f"username:{username}")
    return keys


def _usage(request, key: str, *, increment: bool) -> dict | None:
    try:
        return get_usage(
            request,
            group=SIGN_IN_GROUP,
            key=lambda group, request: key,
            rate=_sign_in_rate(),
            increment=increment,
        )
    except RedisError as error:
        logger.warning("sign-in limits not applied, the cache is unavailable: %s", error)
        return None
