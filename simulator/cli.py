"""Runs a fleet with its console: commands from a script and from stdin, until told to stop.

Stop conditions:
    - `quit`, Ctrl-C (SIGINT) or SIGTERM, always;
    - the end of the script, when stdin is not a terminal (CI): nobody is there to type `quit`;
    - Ctrl-D at a terminal. A closed or piped stdin (EOF) otherwise stops nothing: a simulator
      started in the background of a CI job keeps running until it is sent SIGTERM.
Stopping cancels every device task, closes the HTTP client and prints a summary.

Scenarios: given a server and a release manager's token (`manage.py demo` gives both), the prompt
also plays the demo scenarios of 000 §11 (simulator.scenarios) with this very fleet, beside the
prompt: `scenario disaster` creates and drives the rollout through the API and injects the failure
into these devices. A second fleet started for a scenario in another process would claim the same
device ids (each enrollment revoking the other's token) and double the load on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

from simulator.api import ReleaseManagerApi
from simulator.console import PROMPT, STOP_SCENARIO, Console, format_summary
from simulator.fleet import Fleet
from simulator.scenarios.presets import DEMO
from simulator.scenarios.report import format_result
from simulator.scenarios.runner import ScenarioRunner

NOTICE_PERIOD_SECONDS = 1.0
# On the way out, site gateways deliver what the devices still hold, if the server answers soon.
FINAL_DELIVERY_SECONDS = 5.0
# A scenario stopped by `quit` rolls its rollout back first: a request or two.
SCENARIO_STOP_SECONDS = 15.0


@dataclass(frozen=True)
class ScenarioAccess:
    """What playing scenarios at the prompt needs: the server and a release manager's API token."""

    api_url: str
    token: str


class SharedFleet:
    """The session's running fleet lent to a scenario: the scenario injects, clears and reads the
    status, but the fleet stays the session's. Starting it is a no-op on a running fleet, and
    "stopping" it at the scenario's end only reports; the prompt's notices stay the prompt's."""

    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self.seed = fleet.seed

    async def start(self) -> None:
        await self.fleet.start()

    async def stop(self) -> dict:
        return self.fleet.summary()

    def inject(self, rate: float, **target: Any) -> Any:
        return self.fleet.inject(rate, **target)

    def clear(self, **target: Any) -> dict:
        return self.fleet.clear(**target)

    def status(self) -> dict:
        return self.fleet.status()


class Printer:
    """Writes lines (and the prompt, at a terminal) to the output stream."""

    def __init__(self, out: TextIO, *, interactive: bool):
        self.out = out
        self.interactive = interactive

    def line(self, text: str) -> None:
        if text:
            self.out.write(text + "\n")
            self.out.flush()

    def prompt(self) -> None:
        if self.interactive:
            self.out.write(PROMPT)
            self.out.flush()


def _read_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, stream: TextIO) -> None:
    """Blocking reader on its own daemon thread (not the default executor, which asyncio.run
    would wait for at exit while it sits in readline)."""
    try:
        for line in iter(stream.readline, ""):
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)
    except (RuntimeError, ValueError, OSError):
        # The loop closed (we are exiting) or stdin went away: nothing left to read for.
        return


class Session:
    """One run of the simulator with its console."""

    def __init__(
        self, fleet: Fleet, *, out: TextIO, interactive: bool, scenarios: ScenarioAccess | None = None
    ):
        self.fleet = fleet
        self.console = Console(fleet)
        self.printer = Printer(out, interactive=interactive)
        self.interactive = interactive
        self.stopping = asyncio.Event()
        self.scenarios = scenarios
        self.scenario_task: asyncio.Task | None = None
        self.scenario_stop = asyncio.Event()

    async def run_line(self, line: str, *, echo: bool = False) -> None:
        if echo and line.strip():
            self.printer.line(f"{PROMPT}{line.strip()}")
        reply = self.console.handle(line)
        self.printer.line(reply.text)
        if reply.scenario:
            self.printer.line(self.scenario(reply.scenario))
            # Let it begin (its first lines come before the next prompt).
            await asyncio.sleep(0)
        if reply.quit:
            self.stopping.set()
        elif reply.sleep:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=reply.sleep)

    # ---- scenarios -----------------------------------------------------------------------------

    @property
    def scenario_running(self) -> bool:
        return self.scenario_task is not None and not self.scenario_task.done()

    def scenario(self, name: str) -> str:
        """Start playing a scenario beside the prompt (or stop the one playing); what to say."""
        if name == STOP_SCENARIO:
            if not self.scenario_running:
                return "No scenario is being played."
            self.scenario_stop.set()
            return "Stopping the scenario: its rollout is rolled back…"
        if self.scenarios is None:
            return (
                "Scenarios are played at the prompt of `manage.py demo`. Otherwise run "
                "`manage.py scenario NAME --api-url URL`, which brings its own fleet: not beside this one."
            )
        if self.scenario_running:
            return "A scenario is being played already: wait for its end, or `scenario stop`."
        self.scenario_stop = asyncio.Event()
        self.scenario_task = asyncio.create_task(self._play(name), name=f"scenario-{name}")
        return f"Playing the {name} scenario with these {len(self.fleet.devices)} devices; the prompt stays yours."

    async def _play(self, name: str) -> None:
        config = self.fleet.config
        # 000 §11 as DEMO plays it, with this fleet's size and rhythm (its deadlines follow).
        timings = replace(
            DEMO,
            devices=len(self.fleet.devices),
            interval=config.interval,
            checkin_interval=config.checkin_interval,
        )
        access = self.scenarios
        assert access is not None
        api = ReleaseManagerApi.connect(access.api_url, access.token)
        try:
            runner = ScenarioRunner(
                name,
                api=api,
                fleet=SharedFleet(self.fleet),
                timings=timings,
                emit=self.printer.line,
                stop=self.scenario_stop,
            )
            result = await runner.run()
            for text in format_result(result):
                self.printer.line(text)
        except Exception as exc:
            # Whatever went wrong in a scenario, the fleet and the prompt carry on.
            self.printer.line(f"The {name} scenario stopped on an error: {exc!r}")
        finally:
            await api.close()
            self.printer.prompt()

    async def _end_scenario(self) -> None:
        if not self.scenario_running:
            return
        self.printer.line("Stopping the scenario first: its rollout is rolled back…")
        self.scenario_stop.set()
        assert self.scenario_task is not None
        done, _ = await asyncio.wait({self.scenario_task}, timeout=SCENARIO_STOP_SECONDS)
        if not done:
            self.scenario_task.cancel()
            await asyncio.gather(self.scenario_task, return_exceptions=True)

    async def run_script(self, lines: Sequence[str]) -> None:
        for line in lines:
            if self.stopping.is_set():
                return
            await self.run_line(line, echo=True)
        if not self.interactive:
            self.stopping.set()
        else:
            self.printer.prompt()

    async def read_stdin(self, stream: TextIO) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        thread = threading.Thread(
            target=_read_lines,
            args=(asyncio.get_running_loop(), queue, stream),
            daemon=True,
            name="sim-stdin",
        )
        thread.start()
        self.printer.prompt()
        while (line := await queue.get()) is not None:
            await self.run_line(line)
            if not self.stopping.is_set():
                self.printer.prompt()
        if self.interactive:
            self.printer.line("")
            self.stopping.set()

    async def show_notices(self) -> None:
        while True:
            await asyncio.sleep(NOTICE_PERIOD_SECONDS)
            for notice in self.fleet.metrics.take_notices():
                self.printer.line(f"! {notice}")

    def _install_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stopping.set)
                installed.append(sig)
        return installed

    async def run(self, *, script: Sequence[str] = (), stdin: TextIO | None = None) -> dict:
        installed = self._install_signals()
        config = self.fleet.config
        await self.fleet.start()
        delivered = (
            f", delivered by {len(self.fleet.gateways)} site gateways in batches"
            if self.fleet.gateways
            else ""
        )
        self.printer.line(
            f"Simulating {config.devices} devices against {config.api_url}: a check every "
            f"{config.interval:g} s{delivered}, desired state every {config.checkin_interval:g} s "
            f"(seed {self.fleet.seed}). Type 'help' for commands."
        )
        helpers = [asyncio.create_task(self.show_notices())]
        if script:
            helpers.append(asyncio.create_task(self.run_script(script)))
        if stdin is not None:
            helpers.append(asyncio.create_task(self.read_stdin(stdin)))
        try:
            await self.stopping.wait()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._end_scenario()
            summary = await self.fleet.stop(final_delivery_seconds=FINAL_DELIVERY_SECONDS)
            for sig in installed:
                asyncio.get_running_loop().remove_signal_handler(sig)
        if self.interactive:
            # Ctrl-C leaves the cursor after the prompt.
            self.printer.out.write("\n")
        for notice in self.fleet.metrics.take_notices():
            self.printer.line(f"! {notice}")
        self.printer.line(format_summary(summary))
        return summary


async def run_session(
    fleet: Fleet,
    *,
    out: TextIO,
    interactive: bool,
    script: Sequence[str] = (),
    stdin: TextIO | None = None,
    scenarios: ScenarioAccess | None = None,
) -> dict:
    return await Session(fleet, out=out, interactive=interactive, scenarios=scenarios).run(
        script=script, stdin=stdin
    )
