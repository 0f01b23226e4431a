"""The measurements of the scale benchmark (tests.benchmarks.scale), through SafeRoll's public doors:
the autopilot's Celery tasks run in-process, the HTTP API and the portal through Django's test
client, the lifecycle services for the deploy and the rollbacks. Each figure comes with its ceiling
(tests.benchmarks.scale_ceilings) where SQL can do the same work.

Django's clock is held still while something is measured (BenchClock), so a run of many minutes
sees the window the checks were loaded into; it moves on by a fraction of a second before each
measurement, enough for the autopilot to judge a rollout again.
"""

from __future__ import annotations

import datetime as dt
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from rollouts import tasks
from rollouts.choices import EvaluationSource
from rollouts.gates import Action, Decision
from rollouts.models import DeviceDeployment, Rollout
from rollouts.services import lifecycle
from tests.benchmarks import scale_ceilings as ceilings
from tests.benchmarks.merge import figure
from tests.benchmarks.scale_fleet import (
    CHECK_SPAN,
    CREATED_BEFORE,
    WINDOW,
    FleetSize,
    World,
    analyze,
    build_world,
    load_health_checks,
    statistics_state,
)

# Every read is cut off after this and reported as timed out: thirty times the round's target, and
# short enough that today's plans (one took over ten minutes) keep the run in minutes.
READ_LIMIT_SECONDS = 30.0
# Hand-written SQL over the whole window takes tens of seconds on its own.
CEILING_LIMIT_SECONDS = 120.0
# A stage deploy or a rollback of today takes minutes.
WRITE_LIMIT_SECONDS = 300.0
# A read is repeated (for the median) only while its runs take less than this: above it a figure is
# far from its target whatever its median, and a second run is half a minute more.
CHEAP_SECONDS = 5.0
# The targets where no SQL does the same work: the memory of a stage deploy to 700k
# devices, and the round's growth from 1M to 10M checks in the window.
DEPLOY_RSS_TARGET_MB = 300.0
ROUND_GROWTH_TARGET = 1.5
# A short autopilot period, so that the clock need move on only a fraction of a second between two
# judgements of one rollout (the autopilot skips a rollout judged less than half a period ago).
PERIOD_SECONDS = 0.2
TICK = dt.timedelta(seconds=PERIOD_SECONDS / 2 + 0.05)


class BenchClock:
    """Django's clock (timezone.now), held at `moment` and moved on only by the benchmark; never
    past what the loaded checks allow, so that every check stays in the window."""

    def __init__(self, moment: dt.datetime):
        self.moment = moment
        self.latest: dt.datetime | None = None

    def start_window(self, anchor: dt.datetime) -> None:
        """Measurements begin: the checks lead up to `anchor`, and the window must still hold the
        oldest of them at the last measurement."""
        self.moment = anchor
        self.latest = anchor + WINDOW - CHECK_SPAN

    def tick(self) -> None:
        self.moment += TICK
        if self.latest is not None and self.moment > self.latest:
            raise RuntimeError("The benchmark's clock has run past the window its checks were loaded into.")

    @contextmanager
    def held(self) -> Iterator[BenchClock]:
        with mock.patch.object(timezone, "now", lambda: self.moment):
            yield self


# --- limits and timings ----------------------------------------------------------------------------


@dataclass
class Cutoff:
    fired: bool = False


def _conninfo() -> dict[str, Any]:
    config = connection.settings_dict
    keys = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}
    return {key: config[name] for key, name in keys.items() if config.get(name)}


@contextmanager
def time_limit(seconds: float) -> Iterator[Cutoff]:
    """Once `seconds` have passed, cancel the statement running on this thread's connection, and
    every one after it until the block ends (the work may catch one failure and go on). The
    database error the block ends in is swallowed; `fired` says it was cut off."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    done = threading.Event()
    cutoff = Cutoff()

    def cancel() -> None:
        if done.wait(seconds):
            return
        cutoff.fired = True
        with psycopg.connect(**_conninfo(), autocommit=True) as admin:
            while not done.is_set():
                admin.execute("SELECT pg_cancel_backend(%s)", [pid])
                done.wait(0.5)

    watchdog = threading.Thread(target=cancel, daemon=True)
    watchdog.start()
    try:
        yield cutoff
    except Exception:
        if not cutoff.fired:
            raise
    finally:
        done.set()
        watchdog.join()


@dataclass(frozen=True)
class Timing:
    """The median of the runs; None when a run was cut off at `limit`, or when the measurement was
    skipped because work it includes had been (`skipped`)."""

    seconds: float | None
    limit: float
    skipped: bool = False

    def __str__(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds:.3f} s"
        return f"> {self.limit:.0f} s ({'skipped' if self.skipped else 'timed out'})"

    def __add__(self, other: Timing) -> Timing:
        if self.seconds is None or other.seconds is None:
            return Timing(None, self.limit + other.limit)
        return Timing(self.seconds + other.seconds, self.limit + other.limit)


class Stopwatch:
    """Times SafeRoll's work and its ceilings on the benchmark's clock, under their time limits."""

    def __init__(self, clock: BenchClock, *, runs: int):
        self.clock = clock
        self.runs = runs

    def read(self, action: Callable[[], object], *, includes: Timing | None = None) -> Timing:
        """A read, repeated while cheap. Not run at all when `includes` (work it does too) was cut
        off: it would be, and waiting for that is minutes."""
        if includes is not None and includes.seconds is None:
            return Timing(None, READ_LIMIT_SECONDS, skipped=True)
        return self._median(action, limit=READ_LIMIT_SECONDS, runs=self.runs)

    def ceiling(self, action: Callable[[], object]) -> Timing:
        return self._median(action, limit=CEILING_LIMIT_SECONDS, runs=self.runs)

    def write(self, action: Callable[[], object]) -> Timing:
        """A step that changes the world, so timed once."""
        return self._median(action, limit=WRITE_LIMIT_SECONDS, runs=1)

    def _median(self, action: Callable[[], object], *, limit: float, runs: int) -> Timing:
        """Median seconds of up to `runs` calls, each a moment later on the clock; it stops after
        a run that is not cheap, and at a run that is cut off."""
        samples: list[float] = []
        while len(samples) < runs and (not samples or samples[-1] < CHEAP_SECONDS):
            self.clock.tick()
            with time_limit(limit) as cutoff:
                started = time.perf_counter()
                action()
                samples.append(time.perf_counter() - started)
            if cutoff.fired:
                return Timing(None, limit)
        return Timing(statistics.median(samples), limit)


# --- memory ----------------------------------------------------------------------------------------


@dataclass
class Peak:
    mb: float = 0.0
    # False when the high-water mark could not be reset: then `mb` is the process's peak so far.
    reset: bool = True


class Memory:
    """The process's peak resident memory (Linux's VmHWM), overall and during one step."""

    def __init__(self) -> None:
        self.peak_mb = 0.0

    def read(self) -> float:
        """The high-water mark now, in MB (kept as the overall peak when it is the highest yet)."""
        kb = _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_mb = max(self.peak_mb, kb / 1024)
        return kb / 1024

    @contextmanager
    def peak_during(self) -> Iterator[Peak]:
        self.read()
        peak = Peak(reset=_reset_high_water_mark())
        yield peak
        peak.mb = self.read()


def _status_kb(name: str) -> int | None:
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    return next((int(line.split()[1]) for line in lines if line.startswith(f"{name}:")), None)


def _reset_high_water_mark() -> bool:
    """Linux resets VmHWM to the current resident size on this write (proc(5), clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# --- what SafeRoll does ----------------------------------------------------------------------------


@contextmanager
def celery_inline() -> Iterator[None]:
    """Celery tasks run in this process as they are called, failures raised: the beat's round
    (evaluate_active_rollouts and the evaluate_rollout tasks it fans out) runs synchronously here."""
    from saferoll.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved


def autopilot_round() -> None:
    """What the beat starts every period: the round (with its live broadcast of every ring's health)
    and the judgement of every active rollout."""
    tasks.evaluate_active_rollouts()


def evaluation(rollout: Rollout) -> Callable[[], None]:
    return lambda: tasks.evaluate_rollout(rollout.pk)


def http_get(client: Client, path: str) -> Callable[[], None]:
    def get() -> None:
        response = client.get(path, secure=True)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}, not 200.")

    return get


def promote(world: World, rollout: Rollout) -> Callable[[], None]:
    """A person promotes the rollout, overriding (with a reason) a WAIT judgement stored for the
    purpose beforehand: the figure is the stage deploy's, with no judgement in it (those are
    measured on their own, and right after a bulk load one may not finish at all)."""
    rollout.refresh_from_db()
    ring = rollout.current_ring
    stand_in = lifecycle.evaluation_store(
        rollout=rollout,
        decision=Decision(
            action=Action.WAIT, reason="Scale benchmark: not judged.", evaluation={"ring": ring}
        ),
        source=EvaluationSource.REQUEST,
    )
    return lambda: lifecycle.rollout_promote(
        rollout=rollout,
        actor=world.user,
        reason="Scale benchmark: promoted to measure a stage deploy.",
        evaluation=stand_in,
        override=True,
    )


def roll_back(world: World, rollout: Rollout) -> Callable[[], None]:
    rollout.refresh_from_db()
    return lambda: lifecycle.rollout_rollback(rollout=rollout, actor=world.user, reason="Scale benchmark.")


# --- the report --------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    shown: str
    ceiling: str = ""
    note: str = ""


@dataclass
class Report:
    """The figures for bench-results.json, and the same as table rows and notes to print."""

    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def timing(self, name: str, timing: Timing, *, ceiling: Timing | None = None, note: str = "") -> None:
        data = figure(_rounded(timing.seconds), "s", ceiling=_rounded(ceiling.seconds) if ceiling else None)
        if timing.seconds is None:
            data["timed_out_after"] = timing.limit
        if timing.skipped:
            data["skipped"] = True
        self.figures[name] = data
        shown_ceiling = f"{ceiling}  ×{data['ratio']:.2f}" if "ratio" in data else str(ceiling or "")
        self.rows.append(Row(name, str(timing), shown_ceiling, note))

    def value(
        self, name: str, value: float | None, unit: str, *, target: float | None = None, note: str = ""
    ) -> None:
        self.figures[name] = figure(value, unit, ceiling=target)
        shown = "n/a" if value is None else f"{value:,} {unit}"
        self.rows.append(Row(name, shown, f"{target} {unit} (target)" if target is not None else "", note))


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


# --- the run -------------------------------------------------------------------------------------------


def run(
    *, size: FleetSize, runs: int, analyze_after_load: bool = False, say: Callable[[str], None] = print
) -> Report:
    """Build the world in the configured (empty, migrated) PostgreSQL database and measure it.
    Destructive: it ends with the widest rollout, and the one promoted after it, rolled back."""
    report = Report()
    memory = Memory()
    anchor = timezone.now().replace(microsecond=0)
    clock = BenchClock(anchor - CREATED_BEFORE)
    watch = Stopwatch(clock, runs=runs)
    # The test client's host, whatever ALLOWED_HOSTS the environment gives.
    allowed_hosts = [*settings.ALLOWED_HOSTS, "testserver"]
    with (
        clock.held(),
        celery_inline(),
        override_settings(SAFEROLL_AUTOPILOT_PERIOD_SECONDS=PERIOD_SECONDS, ALLOWED_HOSTS=allowed_hosts),
    ):
        started = time.perf_counter()
        world = build_world(size=size, anchor=anchor)
        say(
            f"{size.devices:,} devices and {len(world.rollouts)} rollouts built in {time.perf_counter() - started:.0f} s"
        )
        clock.start_window(anchor)
        _load(world, slots=[size.checks_per_device - 1], analyze_after=analyze_after_load, say=say)
        report.notes.append(f"statistics when the first round was measured: {statistics_state()}")
        first_round, _ = _round(world, watch, report, "scale.round_seconds_1m_checks")
        say(f"round at {world.checks:,} checks: {first_round}")
        _load(world, slots=range(size.checks_per_device - 1), analyze_after=analyze_after_load, say=say)
        report.notes.append(f"statistics when the reads were measured: {statistics_state()}")
        _measure_reads(world, watch, report, first_round=first_round, say=say)
        _measure_writes(world, watch, report, memory, say=say)
        report.notes.append(f"statistics at the end: {statistics_state()}")
    report.value("scale.peak_rss_mb", round(memory.read(), 1), "MB")
    report.value("scale.devices", size.devices, "devices")
    report.value("scale.checks_in_window", world.checks, "checks")
    return report


def _load(world: World, *, slots: Iterable[int], analyze_after: bool, say: Callable[[str], None]) -> None:
    started = time.perf_counter()
    written = load_health_checks(world, slots=slots)
    if analyze_after:
        analyze()
    say(
        f"{written:,} health checks loaded in {time.perf_counter() - started:.0f} s ({world.checks:,} in the window)"
    )


def _round_ceiling(world: World, watch: Stopwatch) -> tuple[Timing, dict[str, Timing]]:
    """The round's work by hand: every ring's health in one pass (the broadcast's), and each
    rollout's gate health. Returns the total and the gate health by ring."""
    gates = {ring: watch.ceiling(ceilings.gate_health(rollout)) for ring, rollout in world.rollouts.items()}
    total = watch.ceiling(ceilings.ring_health())
    for gate in gates.values():
        total = total + gate
    return total, gates


def _round(
    world: World, watch: Stopwatch, report: Report, name: str, *, includes: Timing | None = None
) -> tuple[Timing, dict[str, Timing]]:
    """A full round and its ceiling, reported as `name`; returns the round and the gates' ceilings."""
    timing = watch.read(autopilot_round, includes=includes)
    ceiling, gates = _round_ceiling(world, watch)
    report.timing(name, timing, ceiling=ceiling, note=f"{world.checks:,} checks in the window")
    return timing, gates


def _measure_reads(
    world: World, watch: Stopwatch, report: Report, *, first_round: Timing, say: Callable[[str], None]
) -> None:
    """The judgements one by one, then the round (which makes them all: not run when one of them,
    or the round at a tenth of the checks, was cut off), the ring health API, and the widest
    rollout's should_promote and page (each includes that rollout's judgement)."""
    evaluations = {ring: watch.read(evaluation(rollout)) for ring, rollout in world.rollouts.items()}
    say("judgements: " + ", ".join(f"{ring} {timing}" for ring, timing in evaluations.items()))
    cut_off = next((timing for timing in evaluations.values() if timing.seconds is None), first_round)
    round_timing, gates = _round(world, watch, report, "scale.round_seconds", includes=cut_off)
    growth = None
    if round_timing.seconds is not None and first_round.seconds:
        growth = round(round_timing.seconds / first_round.seconds, 2)
    report.value("scale.round_growth_1m_to_10m_checks", growth, "ratio", target=ROUND_GROWTH_TARGET)
    for ring, timing in evaluations.items():
        report.timing(
            f"scale.evaluation_seconds.{ring}",
            timing,
            ceiling=gates[ring],
            note=f"{world.devices_by_ring[ring]:,} devices",
        )

    ring = world.rings[-1]
    widest = world.rollouts[ring]
    api = Client(HTTP_AUTHORIZATION=f"Token {world.token}")
    report.timing(
        "scale.ring_health_api_seconds",
        watch.read(http_get(api, f"/api/health/ring/{ring}")),
        ceiling=watch.ceiling(ceilings.ring_health(ring)),
        note=f"GET /api/health/ring/{ring}",
    )
    should_promote = http_get(api, f"/api/rollouts/{widest.rollout_id}/should_promote")
    report.timing(
        "scale.should_promote_seconds",
        watch.read(should_promote, includes=evaluations[ring]),
        ceiling=gates[ring],
        note=f"the {ring} rollout",
    )
    portal = Client()
    portal.force_login(world.user)
    report.timing(
        "scale.rollout_page_seconds",
        watch.read(http_get(portal, f"/rollouts/{widest.rollout_id}"), includes=evaluations[ring]),
        ceiling=gates[ring] + watch.ceiling(ceilings.blast_radius(widest)),
        note=f"the {ring} rollout's page",
    )


def _measure_writes(
    world: World, watch: Stopwatch, report: Report, memory: Memory, *, say: Callable[[str], None]
) -> None:
    """The widest rollout is rolled back, freeing its devices; the one before it is promoted into
    that ring (the stage deploy) and then rolled back with every deployment it has."""
    last, before_last = world.rings[-1], world.rings[-2]
    widest, promoted = world.rollouts[last], world.rollouts[before_last]
    freed = watch.write(roll_back(world, widest))
    report.notes.append(f"the {last} rollout was rolled back first, to free its devices: {freed}")

    deploy_ceiling = watch.ceiling(ceilings.deploy(promoted, last))
    promotion = promote(world, promoted)
    with memory.peak_during() as peak:
        deploy = watch.write(promotion)
    targeted = DeviceDeployment.objects.filter(rollout=promoted, ring=last).count()
    say(f"stage deploy to {targeted:,} devices: {deploy}")
    report.timing(
        "scale.deploy_700k_seconds", deploy, ceiling=deploy_ceiling, note=f"{targeted:,} devices of {last}"
    )
    report.value("scale.deploy_700k_devices", targeted, "devices")
    report.value(
        "scale.deploy_700k_rss_mb",
        round(peak.mb, 1),
        "MB",
        target=DEPLOY_RSS_TARGET_MB,
        note="" if peak.reset else "the process's peak so far: its high-water mark could not be reset",
    )

    deployments = DeviceDeployment.objects.filter(rollout=promoted).count()
    rollback_ceiling = watch.ceiling(ceilings.rollback(promoted))
    rollback = watch.write(roll_back(world, promoted))
    report.timing(
        "scale.rollback_1m_seconds", rollback, ceiling=rollback_ceiling, note=f"{deployments:,} deployments"
    )
    report.value("scale.rollback_1m_deployments", deployments, "deployments")
