"""The console session: script lines, stdin, stop conditions, and the summary at the end.

The fleet's first ticks are an hour away, so no device talks during these tests and nothing
waits on a clock: a session ends as soon as its script or stdin says so."""

import asyncio
import io

from simulator import cli
from simulator.cli import ScenarioAccess, SharedFleet, run_session
from simulator.console import PROMPT
from simulator.fleet import Fleet, FleetConfig
from simulator.scenarios.judge import ScenarioResult
from tests.simulator.fakes import BASE_URL, KEY, FakeServer, run


def quiet_fleet(server: FakeServer) -> Fleet:
    return Fleet(
        FleetConfig(api_url=BASE_URL, devices=2, interval=3600, enrollment_key=KEY, seed=3),
        transport=server.transport(),
    )


def session(*, script=(), stdin=None, interactive=False, scenarios=None) -> tuple[str, dict]:
    out = io.StringIO()
    summary = run(
        run_session(
            quiet_fleet(FakeServer()),
            out=out,
            interactive=interactive,
            script=script,
            stdin=stdin,
            scenarios=scenarios,
        )
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


class FakeRunner:
    """Stands in for simulator.scenarios.ScenarioRunner: injects into the fleet it was lent, then
    waits to be stopped, as a scenario waiting for SafeRoll would."""

    played = []

    def __init__(self, scenario, *, api, fleet, timings, emit, stop):
        self.scenario, self.fleet, self.timings, self.emit, self.stop = scenario, fleet, timings, emit, stop

    async def run(self):
        await self.fleet.start()
        self.fleet.inject(0.03, ring="ring_5")
        self.emit(f"+00:00  sim: inject  ring_5 ({self.scenario}, {self.timings.devices} devices)")
        await self.stop.wait()
        summary = await self.fleet.stop()
        FakeRunner.played.append((self.scenario, summary["devices"]))
        return ScenarioResult(self.scenario, outcome=None, rollout=None, lines=[], error="stopped")


def test_it_plays_a_scenario_with_its_own_fleet_beside_the_prompt(monkeypatch):
    monkeypatch.setattr(cli, "ScenarioRunner", FakeRunner)
    monkeypatch.setattr(cli, "format_result", lambda result: [f"Result: {result.scenario} {result.error}"])
    FakeRunner.played.clear()

    text, summary = session(
        script=["scenario disaster", "scenario happy", "status", "quit"],
        scenarios=ScenarioAccess(api_url=BASE_URL, token="release-token"),
    )

    assert "Playing the disaster scenario with these 2 devices" in text
    assert "sim: inject  ring_5 (disaster, 2 devices)" in text
    assert "A scenario is being played already" in text
    # The fault went into the session's own fleet, which the scenario did not stop.
    assert "faults: ring ring_5: rate 0.03" in text
    assert "Stopping the scenario first" in text and "Result: disaster stopped" in text
    assert FakeRunner.played == [("disaster", 2)]
    assert summary["devices"] == 2


def test_it_explains_where_scenarios_are_played_without_a_server_to_play_them_on():
    text, _ = session(script=["scenario happy", "scenario stop", "scenario tomorrow"])

    assert "Scenarios are played at the prompt of `manage.py demo`" in text
    assert "No scenario is being played." in text
    assert "usage: scenario happy|disaster|manual-pause" in text


def test_it_lends_its_fleet_without_letting_a_scenario_stop_it():
    server = FakeServer()
    fleet = quiet_fleet(server)

    async def scenario():
        await fleet.start()
        lent = SharedFleet(fleet)
        await lent.start()
        summary = await lent.stop()
        assert fleet.running and summary["devices"] == 2 and lent.seed == fleet.seed
        await fleet.stop()

    asyncio.run(scenario())
