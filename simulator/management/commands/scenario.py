"""`manage.py scenario happy|disaster|manual-pause --api-url URL`: rehearse a demo scenario of 000 §11
against a running SafeRoll, with a simulated fleet, and say whether it ended as it should (SPEC §15).

A thin shell over simulator.scenarios: it finds the token and the enrollment key, builds the fleet,
runs the scenario with Ctrl-C wired to a clean stop, prints the summary and exits 1 unless the
scenario ended as expected.
"""

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import replace
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from saferoll.core import roles
from saferoll.core.management.commands.adduser import cli_actor, user_ensure_role
from simulator.api import ReleaseManagerApi
from simulator.fleet import Fleet
from simulator.management.commands.simulate import LOCAL_HOSTS, enrollment_key, positive
from simulator.scenarios.judge import ScenarioResult
from simulator.scenarios.presets import SCENARIOS, Timings, simulated_fleet, timings_for
from simulator.scenarios.report import format_result
from simulator.scenarios.runner import ScenarioRunner

SCENARIO_USERNAME = "scenario"


def scenario_token(option: str | None, api_url: str) -> tuple[str, str | None]:
    """--token, else SAFEROLL_TOKEN, else — for a server on this machine, which runs this project
    on the same database — the token of a "scenario" release manager, created or updated the way
    `manage.py adduser` does. Returns the token and, when it made one, a sentence saying so."""
    if option:
        return option, None
    if os.environ.get("SAFEROLL_TOKEN"):
        return os.environ["SAFEROLL_TOKEN"], None
    if urlsplit(api_url).hostname not in LOCAL_HOSTS:
        raise CommandError(
            f"{api_url} is not on this machine: give a release manager's API token with --token or SAFEROLL_TOKEN."
        )
    ensured = user_ensure_role(username=SCENARIO_USERNAME, role=roles.RELEASE_MANAGER, actor=cli_actor())
    verb = "Created" if ensured.created else "Using"
    return ensured.token, (
        f"{verb} the release manager '{SCENARIO_USERNAME}' of this machine's SafeRoll and its API token "
        "(no --token or SAFEROLL_TOKEN given)."
    )


class Command(BaseCommand):
    help = "Play a demo scenario (happy, disaster, manual-pause) against a running SafeRoll and check its outcome."
    # System checks would only slow the start; the database is touched only to find a token.
    requires_system_checks: list = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("scenario", choices=SCENARIOS, help="Which scenario of 000 §11 to play.")
        parser.add_argument("--api-url", default="http://127.0.0.1:8000", help="SafeRoll's base URL.")
        parser.add_argument("--token", help="A release manager's API token (default: SAFEROLL_TOKEN).")
        parser.add_argument(
            "--fast",
            action="store_true",
            help="Short timings (60 devices, 3 s checks, no bake): for tests and quick rehearsals "
            "against a server whose autopilot runs every second or two.",
        )
        parser.add_argument("--devices", type=positive(int), help="Simulated devices (1000; 60 with --fast).")
        parser.add_argument(
            "--interval", type=positive(float), help="Seconds between health checks (5; 3 with --fast)."
        )
        parser.add_argument("--seed", type=int, help="Seed of the simulated devices' health.")
        parser.add_argument(
            "--prefix",
            help="Device id prefix (tv, seed_demo's devices; scn with --fast, so as not to take over "
            "the first of them, which are all pilot devices).",
        )
        parser.add_argument(
            "--enrollment-key", help="Fleet enrollment key (default: SAFEROLL_ENROLLMENT_KEY)."
        )

    def handle(self, *args, **options) -> None:
        # httpx logs every request at INFO: it would bury the timeline (the fleet does the same).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        api_url = options["api_url"].rstrip("/")
        token, note = scenario_token(options["token"], api_url)
        timings = timings_for(fast=options["fast"], devices=options["devices"], interval=options["interval"])
        if options["prefix"]:
            timings = replace(timings, prefix=options["prefix"])
        fleet = simulated_fleet(
            api_url,
            timings,
            enrollment_key=enrollment_key(options["enrollment_key"], api_url),
            seed=options["seed"],
        )
        if note:
            self._line(note)
        result = asyncio.run(self._play(options["scenario"], api_url, token, fleet, timings))
        for line in format_result(result):
            self._line(line)
        if not result.passed:
            raise CommandError(f"Scenario {result.scenario} did not end as expected.")

    async def _play(
        self, scenario: str, api_url: str, token: str, fleet: Fleet, timings: Timings
    ) -> ScenarioResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []

        def first_signal() -> None:
            # The first Ctrl-C stops the run cleanly (its rollout rolled back, the fleet stopped);
            # a second one interrupts even that.
            stop.set()
            for sig in installed:
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, first_signal)
                installed.append(sig)
        api = ReleaseManagerApi.connect(api_url, token)
        try:
            runner = ScenarioRunner(
                scenario, api=api, fleet=fleet, timings=timings, emit=self._line, stop=stop
            )
            return await runner.run()
        finally:
            await api.close()
            for sig in installed:
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(sig)

    def _line(self, text: str) -> None:
        self.stdout.write(text)
        # Piped output is block-buffered: a timeline is only useful as it happens.
        self.stdout.flush()
