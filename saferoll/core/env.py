"""Typed readers for environment variables that fail loudly on bad values."""

import os
import re

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), not {raw!r}.")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {value}.")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_ring_shares(name: str, default: dict[str, float]) -> dict[str, float]:
    """Read `ring:percent,ring:percent`; the shares must add up to 100."""
    raw = os.environ.get(name)
    if raw is None:
        return dict(default)
    shares: dict[str, float] = {}
    for item in raw.split(","):
        ring, sep, share = item.strip().partition(":")
        try:
            if not sep or not ring:
                raise ValueError
            shares[ring.strip()] = float(share)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must look like 'pilot:10,ring_5:5', not {raw!r}.") from None
    if abs(sum(shares.values()) - 100) > 1e-6:
        raise ImproperlyConfigured(f"{name} shares must add up to 100, not {sum(shares.values())}.")
    return shares


# A rate is COUNT/PERIOD, the period a unit with an optional multiplier: "120/minute", "10/15m".
_RATE = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]*)\s*([a-z]+)\s*$")
_RATE_UNITS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}


def parse_rate(rate: str) -> tuple[int, int]:
    """`"10/15m"` → (10, 900): how many in how many seconds. ValueError when it is not a rate."""
    match = _RATE.match(rate.lower())
    if not match:
        raise ValueError(rate)
    count, multiplier, unit = match.groups()
    seconds = _RATE_UNITS.get(unit)
    if seconds is None or int(count) < 1 or (multiplier and int(multiplier) < 1):
        raise ValueError(rate)
    return int(count), seconds * int(multiplier or 1)


def env_rate(name: str, default: str) -> str:
    """A rate such as `120/minute` or `10/15m` (at least 1 per period)."""
    raw = os.environ.get(name, default)
    try:
        parse_rate(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a rate such as '120/minute' or '10/15m' (count/period), not {raw!r}."
        ) from None
    return raw.strip()
