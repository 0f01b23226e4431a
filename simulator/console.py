"""The simulator's command language: a pure parser, a dispatcher onto a fleet, and the status text.

    inject RING RATE [--pattern immediate|gradual|network]
    inject --version V RATE [--pattern ...]
    clear [RING | --version V]
    status
    chaos power-loss RING SHARE | chaos stuck-download RING SHARE
    chaos clock-skew RING SECONDS | chaos partition RING SECONDS
    scenario happy|disaster|manual-pause | scenario stop    (in `manage.py demo`)
    sleep SECONDS        (scripts: wait before the next line)
    help | quit

Rates and shares are fractions (0.03) or percentages (3%). Nothing here raises on bad input: an
unknown or malformed command becomes a one-line explanation, because an operator mistyping during
a live demo must not stop the fleet.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any, Protocol

from simulator.chaos import SHARE_KINDS, ChaosKind
from simulator.health import Fault, Pattern
from simulator.scenarios.presets import SCENARIOS

PROMPT = "saferoll-sim> "

HELP = """\
Commands:
  inject RING RATE [--pattern P]        make RING's devices unwell; RATE is a crash rate (0.03 or 3%)
  inject --version V RATE [--pattern P] the same for devices running version V (rolling back cures them)
      patterns: immediate (default), gradual (drifts down over minutes), network (latency, then silence)
  clear [RING | --version V]            remove injected failures and chaos (all, or one target)
  status                                per-ring health, versions, reporting, buffers; checks/s and lag
  chaos power-loss RING SHARE           SHARE of RING loses power at activation, reboots on the old version
  chaos stuck-download RING SHARE       SHARE of RING's downloads never finish
  chaos clock-skew RING SECONDS         RING's clocks run SECONDS off (negative: behind)
  chaos partition RING SECONDS          RING cannot reach SafeRoll for SECONDS; checks are buffered, then resynced
  scenario happy|disaster|manual-pause  play a demo scenario of 000 §11 with these devices (manage.py demo)
  scenario stop                         end the scenario being played; its rollout is rolled back
  sleep SECONDS                         wait (for scripts)
  help                                  this text
  quit                                  stop the fleet and print a summary"""


class CommandError(ValueError):
    """Input that is not a command; the message is one helpful line."""


@dataclass(frozen=True)
class Inject:
    rate: float
    ring: str | None = None
    version: str | None = None
    pattern: Pattern = Pattern.IMMEDIATE


@dataclass(frozen=True)
class Clear:
    ring: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Chaos:
    kind: ChaosKind
    ring: str
    value: float


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Scenario:
    """Play one of the demo scenarios with the running fleet, or stop the one being played."""

    name: str


STOP_SCENARIO = "stop"


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class Blank:
    """An empty line or a comment."""


Command = Inject | Clear | Chaos | Status | Scenario | Sleep | Help | Quit | Blank

INJECT_USAGE = "usage: inject RING RATE [--pattern immediate|gradual|network]  or  inject --version V RATE"
CHAOS_USAGE = "usage: chaos power-loss|stuck-download RING SHARE  or  chaos clock-skew|partition RING SECONDS"


def _number(text: str, what: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise CommandError(f"{what} must be a number, not {text!r}.") from None
    if not math.isfinite(value):
        raise CommandError(f"{what} must be a finite number, not {text!r}.")
    return value


def _fraction(text: str, what: str) -> float:
    value = _number(text, what)
    if not 0.0 <= value <= 1.0:
        raise CommandError(f"{what} is a share between 0 and 1 (0.03, or 3%), not {text!r}.")
    return value


def _take_option(words: list[str], name: str) -> tuple[list[str], str | None]:
    """Remove `--name VALUE` or `--name=VALUE` from words; returns (rest, value)."""
    rest: list[str] = []
    value: str | None = None
    iterator = iter(words)
    for word in iterator:
        if word == name:
            value = next(iterator, None)
            if value is None:
                raise CommandError(f"{name} needs a value.")
        elif word.startswith(name + "="):
            value = word.split("=", 1)[1]
        else:
            rest.append(word)
    return rest, value


def _parse_inject(args: list[str]) -> Inject:
    args, pattern_text = _take_option(args, "--pattern")
    args, version = _take_option(args, "--version")
    try:
        pattern = Pattern(pattern_text or Pattern.IMMEDIATE)
    except ValueError:
        raise CommandError(f"Unknown pattern {pattern_text!r}: use immediate, gradual or network.") from None
    if any(arg.startswith("--") for arg in args):
        raise CommandError(f"Unknown option in {' '.join(args)!r}. {INJECT_USAGE}")
    if version is not None:
        if len(args) != 1:
            raise CommandError(INJECT_USAGE)
        return Inject(rate=_fraction(args[0], "RATE"), version=version, pattern=pattern)
    if len(args) != 2:
        raise CommandError(INJECT_USAGE)
    return Inject(rate=_fraction(args[1], "RATE"), ring=args[0], pattern=pattern)


def _parse_clear(args: list[str]) -> Clear:
    args, version = _take_option(args, "--version")
    if version is not None and not args:
        return Clear(version=version)
    if version is None and len(args) <= 1 and not any(arg.startswith("--") for arg in args):
        return Clear(ring=args[0] if args else None)
    raise CommandError("usage: clear  or  clear RING  or  clear --version V")


def _parse_chaos(args: list[str]) -> Chaos:
    if len(args) != 3:
        raise CommandError(CHAOS_USAGE)
    try:
        kind = ChaosKind(args[0])
    except ValueError:
        kinds = ", ".join(kind.value for kind in ChaosKind)
        raise CommandError(f"Unknown chaos {args[0]!r}: use one of {kinds}.") from None
    ring = args[1]
    if kind in SHARE_KINDS:
        return Chaos(kind, ring, _fraction(args[2], "SHARE"))
    seconds = _number(args[2], "SECONDS")
    if kind is ChaosKind.PARTITION and seconds <= 0:
        raise CommandError("A partition lasts a positive number of SECONDS.")
    return Chaos(kind, ring, seconds)


def _parse_scenario(args: list[str]) -> Scenario:
    names = (*SCENARIOS, STOP_SCENARIO)
    if len(args) != 1 or args[0] not in names:
        raise CommandError(f"usage: scenario {'|'.join(SCENARIOS)}  or  scenario {STOP_SCENARIO}")
    return Scenario(args[0])


def _parse_sleep(args: list[str]) -> Sleep:
    if len(args) != 1:
        raise CommandError("usage: sleep SECONDS")
    seconds = _number(args[0], "SECONDS")
    if seconds < 0:
        raise CommandError("sleep needs zero or more SECONDS.")
    return Sleep(seconds)


def _no_args(command: Command, args: list[str], name: str) -> Command:
    if args:
        raise CommandError(f"{name} takes no arguments.")
    return command


def parse(line: str) -> Command:
    """One line of input → a command, or CommandError with a line saying what is wrong."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise CommandError(f"Cannot read that line: {exc}.") from None
    if not words:
        return Blank()
    name, args = words[0].lower(), words[1:]
    if name == "inject":
        return _parse_inject(args)
    if name == "clear":
        return _parse_clear(args)
    if name == "chaos":
        return _parse_chaos(args)
    if name == "sleep":
        return _parse_sleep(args)
    if name == "scenario":
        return _parse_scenario(args)
    if name == "status":
        return _no_args(Status(), args, "status")
    if name in ("help", "?"):
        return Help()
    if name in ("quit", "exit"):
        return _no_args(Quit(), args, name)
    raise CommandError(f"Unknown command {words[0]!r}. Type 'help' for the list of commands.")


class FleetControl(Protocol):
    """What the console needs of a fleet (simulator.fleet.Fleet provides it)."""

    def inject(
        self,
        rate: float,
        *,
        ring: str | None = None,
        version: str | None = None,
        pattern: Pattern | str = ...,
    ) -> Fault: ...

    def clear(self, *, ring: str | None = None, version: str | None = None) -> dict[str, int]: ...

    def chaos(self, kind: ChaosKind | str, ring: str, value: float) -> int: ...

    def status(self) -> dict: ...

    def rings(self) -> list[str]: ...

    def matching(self, *, ring: str | None = None, version: str | None = None) -> int: ...


@dataclass(frozen=True)
class Reply:
    """What to print, and what the runner should do next."""

    text: str = ""
    quit: bool = False
    sleep: float = 0.0
    # A scenario to play (or "stop"): the session runs it beside the prompt.
    scenario: str | None = None


class Console:
    """Turns lines into fleet calls and replies."""

    def __init__(self, fleet: FleetControl):
        self.fleet = fleet

    def handle(self, line: str) -> Reply:
        try:
            command = parse(line)
        except CommandError as exc:
            return Reply(str(exc))
        return self.execute(command)

    def execute(self, command: Command) -> Reply:
        match command:
            case Blank():
                return Reply()
            case Help():
                return Reply(HELP)
            case Quit():
                return Reply("Stopping the fleet…", quit=True)
            case Sleep(seconds):
                return Reply(sleep=seconds)
            case Scenario(name):
                return Reply(scenario=name)
            case Status():
                return Reply(format_status(self.fleet.status()))
            case Inject():
                return Reply(self._inject(command))
            case Clear(ring, version):
                cleared = self.fleet.clear(ring=ring, version=version)
                target = f" for version {version}" if version else f" for ring {ring}" if ring else ""
                return Reply(
                    f"Cleared{target}: {cleared['faults']} fault(s), chaos on {cleared['chaos_devices']} device(s)."
                )
            case Chaos():
                return Reply(self._chaos(command))
        return Reply(f"Nothing to do for {command!r}.")

    def _unknown_ring(self, ring: str) -> str:
        rings = self.fleet.rings()
        known = ", ".join(rings) if rings else "none yet (devices are still enrolling)"
        return f" (no device is in ring {ring!r} now; rings: {known})"

    def _inject(self, command: Inject) -> str:
        self.fleet.inject(command.rate, ring=command.ring, version=command.version, pattern=command.pattern)
        count = self.fleet.matching(ring=command.ring, version=command.version)
        target = f"devices running {command.version}" if command.version else f"ring {command.ring}"
        text = f"Injected crash rate {command.rate:g} ({command.pattern.value}) into {target}: {count} device(s) now."
        if command.ring and count == 0:
            text += self._unknown_ring(command.ring)
        return text

    def _chaos(self, command: Chaos) -> str:
        count = self.fleet.chaos(command.kind, command.ring, command.value)
        if count == 0:
            return f"chaos {command.kind.value}: no device affected" + self._unknown_ring(command.ring)
        if command.kind in SHARE_KINDS:
            return f"chaos {command.kind.value}: armed on {count} device(s) of {command.ring}."
        unit = "s skew" if command.kind is ChaosKind.CLOCK_SKEW else " s"
        return f"chaos {command.kind.value}: {count} device(s) of {command.ring}, {command.value:g}{unit}."


def _fmt(value: Any, spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def _mix(counts: dict[str, int], limit: int = 3) -> str:
    items = list(counts.items())
    text = " ".join(f"{name}:{count}" for name, count in items[:limit])
    return text + (f" +{len(items) - limit}" if len(items) > limit else "")


def format_status(status: dict) -> str:
    """The status dict of Fleet.status() as a few readable lines and a per-ring table."""
    lag = status.get("lag_ms", {})
    answers = status.get("answer_ms", {})
    lines = [
        f"fleet: {status['devices']} devices ({status['enrolled']} enrolled), seed {status['seed']}, "
        f"up {status.get('uptime_s', 0):.0f} s",
        f"checks: {status.get('generated_per_s', 0):.1f}/s taken, {status.get('delivered_per_s', 0):.1f}/s "
        f"acknowledged, target {status.get('target_per_s', 0):.1f}/s; schedule lag p50 {lag.get('p50', 0)} ms, "
        f"p95 {lag.get('p95', 0)} ms, max {lag.get('max', 0)} ms",
        f"requests: {status.get('requests_per_s', 0):.1f}/s answered by the server; devices' answered p50 "
        f"{answers.get('p50', 0)} ms, p95 {answers.get('p95', 0)} ms (waiting for a connection included); "
        f"simulator CPU {status.get('cpu_percent', 0):.0f} %",
        format_delivery(status),
        f"{'ring':<10} {'devices':>7}  {'versions':<24} {'deployments':<36} {'crash-free':>10} {'boot-ok':>8} "
        f"{'latency':>8} {'reporting':>9} {'buffered':>8}",
    ]
    for ring, row in status.get("rings", {}).items():
        latency = _fmt(row["median_latency_ms"], "d")
        lines.append(
            f"{ring:<10} {row['devices']:>7}  {_mix(row['versions']):<24} {_mix(row['deployments']):<36} "
            f"{_fmt(row['crash_free'], '.4f'):>10} {_fmt(row['boot_success'], '.3f'):>8} "
            f"{latency + (' ms' if row['median_latency_ms'] is not None else ''):>8} "
            f"{row['reporting'] * 100:>8.0f}% {row['buffered']:>8}"
        )
    faults = status.get("faults") or []
    lines.append("faults: " + ("; ".join(faults) if faults else "none"))
    chaos = {name: count for name, count in (status.get("chaos") or {}).items() if count}
    lines.append("chaos: " + (", ".join(f"{name} {count}" for name, count in chaos.items()) or "none"))
    lines.append(
        f"totals: {status.get('checks_generated', 0)} taken, {status.get('checks_delivered', 0)} stored, "
        f"{status.get('checks_duplicate', 0)} duplicates, {status.get('checks_dropped', 0)} dropped "
        f"(buffer full), {status.get('checks_rejected', 0)} rejected"
    )
    failures = status.get("failures") or {}
    if failures:
        lines.append(
            "failures: " + ", ".join(f"{kind} ×{count}" for kind, count in list(failures.items())[:6])
        )
    return "\n".join(lines)


def format_delivery(status: dict) -> str:
    """One line: who delivers the checks, and how the gateways' batches fare."""
    delivery = status.get("delivery") or {}
    if delivery.get("mode") != "gateway":
        return "delivery: each device posts its own checks"
    batches = status.get("batch_answer_ms", {})
    text = (
        f"delivery: {delivery.get('gateways', 0)} site gateways, {status.get('batches_per_s', 0):.1f} "
        f"batches/s of {status.get('checks_per_batch', 0):.0f} checks on average, answered p50 "
        f"{batches.get('p50', 0)} ms, p95 {batches.get('p95', 0)} ms"
    )
    errors = delivery.get("last_errors") or []
    return text + (f"; last gateway error: {errors[0]}" if errors else "")


def format_summary(summary: dict) -> str:
    lag = summary.get("lag_ms", {})
    text = (
        f"Stopped after {summary.get('uptime_s', 0):.0f} s: {summary['devices']} devices "
        f"({summary['enrolled']} enrolled), {summary.get('checks_generated', 0)} checks taken, "
        f"{summary.get('checks_delivered', 0)} stored, {summary.get('checks_duplicate', 0)} duplicates, "
        f"{summary.get('checks_dropped', 0)} dropped, {summary.get('checks_rejected', 0)} rejected, "
        f"{summary.get('buffered', 0)} still buffered, {summary.get('requests', 0)} server requests; "
        f"lag p50 {lag.get('p50', 0)} ms, "
        f"p95 {lag.get('p95', 0)} ms, max {lag.get('max', 0)} ms (seed {summary['seed']})."
    )
    failures = summary.get("failures") or {}
    if failures:
        text += "\nfailures: " + ", ".join(f"{kind} ×{count}" for kind, count in failures.items())
    return text
