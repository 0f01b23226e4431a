"""Runs a fleet with its console: commands from a script and from stdin, until told to stop.

Stop conditions:
    - `quit`, Ctrl-C (SIGINT) or SIGTERM, always;
    - the end of the script, when stdin is not a terminal (CI): nobody is there to type `quit`;
    - Ctrl-D at a terminal. A closed or piped stdin (EOF) otherwise stops nothing: a simulator
      started in the background of a CI job keeps running until it is sent SIGTERM.
Stopping cancels every device task, closes the HTTP client and prints a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Sequence
from typing import TextIO

from simulator.console import PROMPT, Console, format_summary
from simulator.fleet import Fleet

NOTICE_PERIOD_SECONDS = 1.0


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

    def __init__(self, fleet: Fleet, *, out: TextIO, interactive: bool):
        self.fleet = fleet
        self.console = Console(fleet)
        self.printer = Printer(out, interactive=interactive)
        self.interactive = interactive
        self.stopping = asyncio.Event()

    async def run_line(self, line: str, *, echo: bool = False) -> None:
        if echo and line.strip():
            self.printer.line(f"{PROMPT}{line.strip()}")
        reply = self.console.handle(line)
        self.printer.line(reply.text)
        if reply.quit:
            self.stopping.set()
        elif reply.sleep:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=reply.sleep)

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
            summary = await self.fleet.stop()
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
    fleet: Fleet, *, out: TextIO, interactive: bool, script: Sequence[str] = (), stdin: TextIO | None = None
) -> dict:
    return await Session(fleet, out=out, interactive=interactive).run(script=script, stdin=stdin)
