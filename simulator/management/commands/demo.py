"""`manage.py demo [--port 8000] [--devices 1000] [--interval 5]`: the whole product on this machine.

    1. Refuses at once, saying so, when the port is taken or the database is not migrated.
    2. Makes sure of the demo world (seed_demo, idempotent), gives the four demo logins new
       generated passwords (they are stored hashed, so new ones are the only ones that can be
       shown) and reads the site gateways' token.
    3. Starts `manage.py serve` as a child process, with this process's environment. In the
       embedded default (no REDIS_URL) it runs the autopilot in-process; with REDIS_URL set it
       leaves it to `celery -A saferoll worker -B`, which is then started as a second child, as in
       the production topology. Their output goes to the state folder (serve.log, celery.log), not
       over the prompt.
    4. Waits for GET /health, prints the portal URL, the logins and how to rehearse a scenario.
    5. Runs the simulator in the foreground with its prompt, the checks going through site
       gateways as the "fleet-gateway" service account (simulator.gateway). `scenario disaster`
       (or happy, manual-pause) at the prompt plays a scenario of 000 §11 with these devices, as
       the demo's release manager. `manage.py scenario` in another terminal brings a fleet of its
       own with the same device ids: measured beside the demo, its enrollments revoked the demo
       devices' tokens (and theirs), its per-device posting took the server's answers past a
       minute, and it gave up waiting for its devices to enroll. It is for a server on its own.
    6. `quit`, Ctrl-C or SIGTERM: stops the simulator first, then each child in turn (SIGTERM,
       wait, SIGKILL after a timeout), and exits 0.

The children run in their own sessions, so that the terminal's Ctrl-C reaches this process only
and the shutdown happens in that order; on Linux they are also told to die with this process, so
that even a `kill -9` of the demo leaves no server behind.

Demo defaults, measured on a 2-core machine against the embedded server with 1,000 devices at a
5 s interval (README, "Demo"): per-device posting needs ~270 requests/s where the embedded server
answers ~30, so checks go through 8 site gateways (125 devices each, one batch of ~125 checks per
gateway every 5 s: 1.6 requests/s), and desired state is read every 60 s ± 10 %: ~19 requests/s
in all, about 60 % of what the server answers, which leaves room for the portal and for the
deployment steps of a rollout. At 30 s the reads alone (33/s) exceed it and their answers fall
minutes behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from saferoll.core import roles
from saferoll.core.management.commands.adduser import cli_actor
from saferoll.portal.management.commands.seed_demo import demo_logins, gateway_account_ensure, write_logins
from simulator.cli import ScenarioAccess, run_session
from simulator.fleet import Fleet, FleetConfig
from simulator.management.commands.simulate import jitter, positive

MANAGE_PY = str(Path(settings.BASE_DIR) / "manage.py")
HEALTH_TIMEOUT_SECONDS = 60.0
HEALTH_POLL_SECONDS = 0.25
# uvicorn finishes the requests in flight and the embedded autopilot joins its worker (≤ 10 s);
# a celery worker finishes its task (the autopilot's time limit is far below this only when idle).
STOP_TIMEOUT_SECONDS = 15.0
LOG_TAIL_LINES = 15

# The demo's fleet (see the module docstring for the measurements behind these).
DEMO_CHECKIN_INTERVAL = 60.0
DEMO_CHECKIN_JITTER = 0.1
# One gateway per hospital of the seeded fleet (8 sites of 125 TVs).
DEMO_DEVICES_PER_SITE = 125
# Few connections: on SQLite every request opens its own connection and writers queue for one
# lock, so more parallel requests only add contention. The gateways get their own.
DEMO_MAX_CONNECTIONS = 2
DEMO_GATEWAY_CONNECTIONS = 1


@dataclass(frozen=True)
class ChildSpec:
    """A process the demo runs beside the simulator."""

    name: str
    argv: list[str]
    log: Path


def child_plan(
    *, host: str, port: int, redis_url: str | None, state_dir: Path, python: str = sys.executable
) -> list[ChildSpec]:
    """What to start, in order: the server, and the autopilot's worker and beat when there is a
    Redis to reach them through (without it, `serve` runs them itself on an in-memory broker)."""
    children = [
        ChildSpec(
            "serve",
            [python, MANAGE_PY, "serve", "--host", host, "--port", str(port)],
            state_dir / "serve.log",
        )
    ]
    if redis_url:
        children.append(
            ChildSpec(
                "celery",
                [python, "-m", "celery", "-A", "saferoll", "worker", "-B", "--loglevel", "INFO"],
                state_dir / "celery.log",
            )
        )
    return children


def child_environment() -> dict[str, str]:
    """This process's environment for the children, served on plain http://127.0.0.1: with
    DATABASE_URL set SafeRoll expects HTTPS (redirects, Secure cookies) unless told otherwise,
    and neither the simulator nor a browser could then talk to the demo."""
    return {"SAFEROLL_HTTPS": "false", **os.environ}


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the demo process dies, however it dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    """Starts the children and stops them again, in order, whatever happened in between."""

    def __init__(
        self,
        *,
        popen: Callable[..., subprocess.Popen] = subprocess.Popen,
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
        cwd: Path | None = None,
    ):
        self.popen = popen
        self.stop_timeout = stop_timeout
        self.cwd = cwd or Path(settings.BASE_DIR)
        self.children: list[tuple[ChildSpec, subprocess.Popen]] = []

    def start(self, spec: ChildSpec) -> subprocess.Popen:
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with spec.log.open("wb") as log:
            # The child keeps its own copy of the file descriptor; ours closes here.
            process = self.popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=child_environment(),
                # Its own session: the terminal's Ctrl-C reaches the demo only, which stops the
                # simulator before the server.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.children.append((spec, process))
        return process

    def exited(self) -> list[tuple[ChildSpec, int]]:
        return [(spec, code) for spec, process in self.children if (code := process.poll()) is not None]

    def stop(self, say: Callable[[str], None] = lambda text: None) -> None:
        """Stop every child in start order: SIGTERM, wait, SIGKILL to its whole process group
        after the timeout (a celery worker's pool processes included)."""
        for spec, process in self.children:
            if process.poll() is not None:
                continue
            say(f"Stopping {spec.name} (pid {process.pid})…")
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                say(f"{spec.name} did not stop within {self.stop_timeout:g} s: killing it.")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.kill()
                process.wait()


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port. SO_REUSEADDR as uvicorn sets it, so a
    connection of a previous run still in TIME_WAIT does not count."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return True
    return False


def local_url(host: str, port: int) -> str:
    """The URL to reach a server bound to host:port from this machine."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ChildFailed(CommandError):
    pass


def wait_until_up(
    url: str,
    *,
    supervisor: Supervisor,
    timeout: float = HEALTH_TIMEOUT_SECONDS,
    get: Callable[..., httpx.Response] = httpx.get,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Until GET /health answers 200 (healthy, or degraded while the autopilot's first round is
    still to come). Fails as soon as a child exits, with the end of its log."""
    deadline = clock() + timeout
    while True:
        for spec, code in supervisor.exited():
            raise ChildFailed(f"{spec.name} exited with status {code} while starting:\n{log_tail(spec.log)}")
        try:
            if get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if clock() >= deadline:
            raise ChildFailed(
                f"SafeRoll did not answer {url}/health within {timeout:g} s; see {supervisor.children[0][0].log}."
            )
        sleep(HEALTH_POLL_SECONDS)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def run_simulator(
    config: FleetConfig, *, out: TextIO, stdin: TextIO, scenarios: ScenarioAccess | None = None
) -> dict:
    """The simulator with its prompt, in the foreground, until quit, Ctrl-C or SIGTERM."""
    return asyncio.run(
        run_session(Fleet(config), out=out, interactive=stdin.isatty(), stdin=stdin, scenarios=scenarios)
    )


def migrations_pending() -> bool:
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    return bool(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Run the portal, the autopilot and a simulated fleet of 1,000 devices, with the simulator's prompt."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to serve on (127.0.0.1).")
        parser.add_argument("--port", type=positive(int), default=8000, help="Port to serve on (8000).")
        parser.add_argument("--devices", type=positive(int), default=1000, help="Simulated devices (1000).")
        parser.add_argument(
            "--interval", type=positive(float), default=5.0, help="Seconds between health checks (5)."
        )
        parser.add_argument(
            "--checkin-interval",
            type=positive(float),
            default=DEMO_CHECKIN_INTERVAL,
            help=f"Seconds between each device's desired-state reads ({DEMO_CHECKIN_INTERVAL:g}).",
        )
        parser.add_argument(
            "--checkin-jitter",
            type=jitter,
            default=DEMO_CHECKIN_JITTER,
            help=f"Spread of those reads, a share of the interval ({DEMO_CHECKIN_JITTER:g}).",
        )
        parser.add_argument("--seed", type=int, help="Seed for reproducible health data and chaos picks.")

    def handle(self, *args, **options) -> None:
        # One line per request of the health probe would end up among the logins.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        supervisor = Supervisor()
        try:
            self._run(supervisor, options)
        except KeyboardInterrupt:
            self.stdout.write("\nInterrupted.")
        finally:
            # However we got here: nothing may be left running. A second Ctrl-C must not cut the
            # shutdown short, and it is bounded by the stop timeout anyway.
            with _ignoring_signals():
                supervisor.stop(say=self.stdout.write)
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write("Demo stopped.")

    def _run(self, supervisor: Supervisor, options: dict) -> None:
        host, port = options["host"], options["port"]
        if port_in_use(host, port):
            raise CommandError(
                f"Port {port} on {host} is already in use (another SafeRoll or demo?). Stop it, or "
                f"choose another port: python manage.py demo --port {port + 1}"
            )
        if migrations_pending():
            raise CommandError("The database is not migrated yet: run `python manage.py migrate` first.")

        self.stdout.write("Preparing the demo world (seed_demo) and new passwords for the demo logins…")
        call_command("seed_demo", devices=options["devices"], stdout=io.StringIO())
        actor = cli_actor()
        logins = demo_logins(actor=actor, reset_passwords=True)
        gateway = gateway_account_ensure(actor=actor)

        url = local_url(host, port)
        plan = child_plan(host=host, port=port, redis_url=settings.REDIS_URL, state_dir=settings.STATE_DIR)
        for spec in plan:
            supervisor.start(spec)
        self.stdout.write(f"Starting SafeRoll on {url}/ (log: {plan[0].log})…")
        wait_until_up(url, supervisor=supervisor)

        self._introduce(url, plan, logins, gateway, options)
        config = FleetConfig(
            api_url=url,
            devices=options["devices"],
            interval=options["interval"],
            checkin_interval=options["checkin_interval"],
            checkin_jitter=options["checkin_jitter"],
            enrollment_key=settings.SAFEROLL_ENROLLMENT_KEY,
            gateway_token=gateway.token,
            devices_per_site=DEMO_DEVICES_PER_SITE,
            max_connections=DEMO_MAX_CONNECTIONS,
            gateway_connections=DEMO_GATEWAY_CONNECTIONS,
            seed=options["seed"],
        )
        # The raw stream, as `simulate` does: the prompt must not get a newline appended.
        release_manager = next(login for login in logins if login.role == roles.RELEASE_MANAGER)
        run_simulator(
            config,
            out=options.get("stdout") or sys.stdout,
            stdin=sys.stdin,
            scenarios=ScenarioAccess(api_url=url, token=release_manager.token),
        )
        for spec, code in supervisor.exited():
            self.stderr.write(f"{spec.name} exited on its own with status {code}; see {spec.log}.")

    def _introduce(self, url: str, plan: list[ChildSpec], logins, gateway, options: dict) -> None:
        write = self.stdout.write
        write("")
        write(self.style.SUCCESS(f"SafeRoll is up: {url}/"))
        write(f"  admin {url}/admin/   API docs {url}/api/docs/")
        for spec in plan:
            write(f"  {spec.name} log: {spec.log}")
        if len(plan) == 1:
            write("  The autopilot (Celery worker and beat) runs inside the server process.")
        else:
            write("  The autopilot runs as `celery -A saferoll worker -B` (REDIS_URL is set).")
        write_logins(
            self.stdout,
            logins,
            gateway,
            heading="Logins, with new passwords (any printed before no longer work):",
        )
        write("Rehearse a scenario of 000 §11 with these devices: type at the prompt below")
        write("  scenario happy | scenario disaster | scenario manual-pause")
        write(
            f"(`python manage.py scenario disaster --api-url {url}` in another terminal brings 1,000 devices "
            "of its own: run it against `manage.py serve` alone, not beside this demo.)"
        )
        write("")


@contextlib.contextmanager
def _ignoring_signals():
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
