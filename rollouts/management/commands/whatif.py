"""`manage.py whatif --plan NAME --runs N --seed S [--outside-events SHARE] [--fleet N] [--json FILE]`
(SPEC §15): what would this plan do? Replays N simulated rollouts of the plan through the real gate
engine and autopilot policy (rollouts.whatif), prints a table per scenario and overall, and with
--json writes the figures in bench-results.json's shape."""

import json
import os
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rollouts.services.plans import plan_for_whatif, whatif_fleet
from rollouts.whatif import replay


class Command(BaseCommand):
    help = (
        "Replay simulated rollouts of a plan through the real gates and autopilot; print the safety figures."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--plan", required=True, help="A stored plan's name, or a preset's.")
        parser.add_argument("--runs", type=int, default=100, help="Simulated rollouts (default 100).")
        parser.add_argument(
            "--seed", type=int, default=1, help="The same seed gives the same table (default 1)."
        )
        parser.add_argument(
            "--outside-events",
            type=float,
            default=0.3,
            help="Share of runs with a site outage or latency spike (default 0.3).",
        )
        parser.add_argument("--fleet", type=int, default=1_000_000, help="Devices (default 1,000,000).")
        parser.add_argument(
            "--heartbeat", type=float, default=5.0, help="Seconds between checks (default 5)."
        )
        parser.add_argument(
            "--workers", type=int, default=os.cpu_count() or 1, help="Processes (default: one per CPU)."
        )
        parser.add_argument("--json", type=Path, help="Write the figures to this file.")

    def handle(self, *args, **options) -> None:
        runs, outside = options["runs"], options["outside_events"]
        for name in ("runs", "fleet", "workers"):
            if options[name] < 1:
                raise CommandError(f"--{name} must be at least 1, not {options[name]}.")
        if not 0.0 <= outside <= 1.0:
            raise CommandError(f"--outside-events is a share of the runs, between 0 and 1, not {outside:g}.")
        if options["heartbeat"] <= 0:
            raise CommandError("--heartbeat must be a positive number of seconds.")
        plan = plan_for_whatif(options["plan"])
        if plan is None:
            raise CommandError(f"No plan or preset is called {options['plan']!r}.")
        started = time.monotonic()
        try:
            report = replay(
                plan,
                runs=runs,
                seed=options["seed"],
                fleet=whatif_fleet(options["fleet"], heartbeat_seconds=options["heartbeat"]),
                outside_events=outside,
                workers=options["workers"],
            )
        except ValueError as exc:
            raise CommandError(f"Plan {plan.name}: {exc}") from None
        self.stdout.write(report.table())
        self.stdout.write(f"{runs} runs in {time.monotonic() - started:.1f} s.")
        if options["json"] is not None:
            options["json"].write_text(json.dumps(report.figures(), indent=2) + "\n")
            self.stdout.write(f"Figures written to {options['json']}.")
