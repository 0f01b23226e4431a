"""The console session: script lines, stdin, stop conditions, and the summary at the end.

The fleet's first ticks are an hour away, so no device talks during these tests and nothing
waits on a clock: a session ends as soon as its script or stdin says so."""

import io

from simulator.cli import run_session
from simulator.console import PROMPT
from simulator.fleet import Fleet, FleetConfig
from tests.simulator.fakes import BASE_URL, KEY, FakeServer, run


def quiet_fleet(server: FakeServer) -> Fleet:
    return Fleet(
        FleetConfig(api_url=BASE_URL, devices=2, interval=3600, enrollment_key=KEY, seed=3),
        transport=server.transport(),
    )


def session(*, script=(), stdin=None, interactive=False) -> tuple[str, dict]:
    out = io.StringIO()
    summary = run(
        run_session(quiet_fleet(FakeServer()), out=out, interactive=interactive, script=script, stdin=stdin)
    )
    return out.getvalue(), summary


def test_it_runs_a_script_and_stops_at_its_end_without_a_terminal():
    text, summary = session(script=["status", "bogus", "inject ring_5 0.03", "# comment"])
    assert "Simulating 2 devices" in text
    assert f"{PROMPT}status" in text and "fleet: 2 devices" in text
    assert "Unknown command 'bogus'" in text
    assert "Injected crash rate 0.03" in text
    assert "Stopped after" in text
    assert summary["devices"] == 2


def test_it_stops_on_quit_before_the_rest_of_the_script():
    text, _ = session(script=["quit", "status"])
    assert "Stopping the fleet" in text
    assert "fleet: 2 devices" not in text


def test_it_reads_commands_from_stdin_until_quit():
    text, _ = session(stdin=io.StringIO("help\nquit\n"))
    assert "chaos partition RING SECONDS" in text and "Stopped after" in text


def test_it_stops_at_end_of_input_at_a_terminal_and_shows_the_prompt():
    text, _ = session(stdin=io.StringIO("status\n"), interactive=True)
    assert text.count(PROMPT) >= 2
    assert "fleet: 2 devices" in text and "Stopped after" in text
