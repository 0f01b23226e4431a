"""`manage.py simulate`: a simulated device fleet talking to SafeRoll over HTTP (SPEC §12, 000 §8).

A thin shell: it reads options, finds the enrollment key (and the gateway token, if any) and hands
over to simulator.cli.

With `--gateway-token` (or SAFEROLL_GATEWAY_TOKEN) the checks go through one gateway per site in
batches (simulator.gateway): the way to run 1,000 devices against one embedded server. The token is
a service account's holding `telemetry.ingest_health`; `seed_demo` creates one ("fleet-gateway").
"""

import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulator.cli import run_session
from simulator.fleet import Fleet, FleetConfig, parse_rings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def enrollment_key(option: str | None, api_url: str) -> str:
    """--enrollment-key, else SAFEROLL_ENROLLMENT_KEY, else — for a server on this machine, which
    runs this same project with the same state directory — the key from the project's settings
    (in the embedded default it is derived from the local secret, so it cannot be typed in)."""
    if option:
        return option
    if os.environ.get("SAFEROLL_ENROLLMENT_KEY"):
        return os.environ["SAFEROLL_ENROLLMENT_KEY"]
    if urlsplit(api_url).hostname in LOCAL_HOSTS:
        return settings.SAFEROLL_ENROLLMENT_KEY
    raise CommandError(
        f"{api_url} is not on this machine: give its fleet enrollment key with --enrollment-key "
        "or SAFEROLL_ENROLLMENT_KEY."
    )


def gateway_token(option: str | None) -> str | None:
    """--gateway-token, else SAFEROLL_GATEWAY_TOKEN (which keeps the token out of `ps`), else None:
    every device posts its own checks."""
    return option or os.environ.get("SAFEROLL_GATEWAY_TOKEN") or None


def jitter(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise ValueError(text)
    return value


def positive(kind: type):
    def convert(text: str):
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value

    convert.__name__ = f"positive {kind.__name__}"
    return convert


class Command(BaseCommand):
    help = "Simulate a fleet of devices that enroll, report health and follow rollouts over HTTP."
    # The simulator touches no database; system checks would only slow its start.
    requires_system_checks: list = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--devices", type=positive(int), default=1000, help="Number of devices (1000).")
        parser.add_argument(
            "--interval", type=positive(float), default=5.0, help="Seconds between health checks (5)."
        )
        parser.add_argument("--api-url", default="http://127.0.0.1:8000", help="SafeRoll's base URL.")
        parser.add_argument("--seed", type=int, help="Seed for reproducible health data and chaos picks.")
        parser.add_argument(
            "--enrollment-key", help="Fleet enrollment key (default: SAFEROLL_ENROLLMENT_KEY)."
        )
        parser.add_argument("--prefix", default="tv", help="Device id prefix: tv-0001, tv-0002, … (tv).")
        parser.add_argument(
            "--checkin-interval",
            type=positive(float),
            default=15.0,
            help="Seconds between desired-state reads (15).",
        )
        parser.add_argument(
            "--checkin-jitter",
            type=jitter,
            default=0.1,
            help="Spread desired-state reads by this share of the interval either side, 0 to <1 (0.1).",
        )
        parser.add_argument(
            "--gateway-token",
            help="Deliver checks through one gateway per site in batches, with this API token of an "
            "account holding telemetry.ingest_health (default: SAFEROLL_GATEWAY_TOKEN; none: each "
            "device posts its own).",
        )
        parser.add_argument(
            "--devices-per-site",
            type=positive(int),
            default=FleetConfig.devices_per_site,
            help=f"Devices per site, and so per gateway ({FleetConfig.devices_per_site}).",
        )
        parser.add_argument(
            "--script", type=Path, help="Commands to run, one per line ('sleep SECONDS' waits)."
        )
        parser.add_argument(
            "--rings",
            help="Assign rings here instead of on the server, e.g. pilot:10,ring_5:5,ring_25:25,ring_100:60.",
        )
        parser.add_argument(
            "--initial-version", default="v2.0", help="Version every device runs at start (v2.0)."
        )
        parser.add_argument(
            "--variants",
            default=",".join(FleetConfig.variants),
            help="Hardware variants handed out in turn, comma-separated ('' for none); "
            "the demo fleet's TVs by default.",
        )
        parser.add_argument(
            "--buffer-limit",
            type=positive(int),
            default=360,
            help="Checks a device buffers while offline (360).",
        )
        parser.add_argument(
            "--max-connections",
            type=positive(int),
            default=8,
            help="HTTP connections shared by the fleet's devices (8).",
        )
        parser.add_argument(
            "--gateway-connections",
            type=positive(int),
            default=FleetConfig.gateway_connections,
            help=f"HTTP connections of the site gateways, beside the devices' ({FleetConfig.gateway_connections}).",
        )

    def handle(self, *args, **options) -> None:
        script: list[str] = []
        if options["script"]:
            try:
                script = options["script"].read_text().splitlines()
            except OSError as exc:
                raise CommandError(f"Cannot read the script {options['script']}: {exc.strerror}.") from None
        try:
            rings = parse_rings(options["rings"]) if options["rings"] else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        api_url = options["api_url"].rstrip("/")
        config = FleetConfig(
            api_url=api_url,
            devices=options["devices"],
            interval=options["interval"],
            checkin_interval=options["checkin_interval"],
            checkin_jitter=options["checkin_jitter"],
            gateway_token=gateway_token(options["gateway_token"]),
            enrollment_key=enrollment_key(options["enrollment_key"], api_url),
            prefix=options["prefix"],
            seed=options["seed"],
            rings=rings,
            version=options["initial_version"],
            variants=tuple(name.strip() for name in options["variants"].split(",") if name.strip()),
            buffer_limit=options["buffer_limit"],
            devices_per_site=options["devices_per_site"],
            max_connections=options["max_connections"],
            gateway_connections=options["gateway_connections"],
        )
        interactive = sys.stdin.isatty()
        out = options.get("stdout") or sys.stdout
        asyncio.run(
            run_session(Fleet(config), out=out, interactive=interactive, script=script, stdin=sys.stdin)
        )
