"""The three demo scenarios of 000 §11, end to end: a live server on PostgreSQL, a real Celery worker
and beat judging every second, and a simulated fleet over real HTTP, with the fast timings."""

import asyncio
import statistics

import pytest
from django.conf import settings
from django.core.management import call_command

from rollouts.models import DeviceDeployment, Rollout
from saferoll.core.models import AuditEvent
from simulator.api import ReleaseManagerApi
from simulator.scenarios.judge import ScenarioResult
from simulator.scenarios.presets import DISASTER, FAST, HAPPY, PAUSE_REASON, simulated_fleet
from simulator.scenarios.report import format_result
from simulator.scenarios.runner import ScenarioRunner
from telemetry.models import HealthCheck

pytestmark = pytest.mark.django_db(transaction=True)


def play(scenario: str, base_url: str, token: str, *, seed: int = 42) -> ScenarioResult:
    """Run a scenario the way the command does, collecting its lines."""
    fleet = simulated_fleet(base_url, FAST, enrollment_key=settings.SAFEROLL_ENROLLMENT_KEY, seed=seed)

    async def main() -> ScenarioResult:
        api = ReleaseManagerApi.connect(base_url, token)
        try:
            return await ScenarioRunner(
                scenario, api=api, fleet=fleet, timings=FAST, emit=lambda line: None
            ).run()
        finally:
            await api.close()

    return asyncio.run(main())


def story(result: ScenarioResult) -> str:
    """The timeline and summary, for an assertion message."""
    return "\n".join([*result.lines, *format_result(result)])


def actions(rollout: Rollout) -> list[str]:
    return list(
        AuditEvent.objects.filter(rollout=rollout)
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )


def test_the_happy_path_completes_ring_by_ring_without_a_rollback(saferoll_live):
    result = play(HAPPY, *saferoll_live)

    assert result.passed, story(result)
    rollout = Rollout.objects.get(rollout_id=result.rollout["rollout_id"])
    assert rollout.status == "completed"
    done = actions(rollout)
    assert not {"ROLLBACK", "AUTO_ROLLBACK"} & set(done)
    promoted_to = list(
        AuditEvent.objects.filter(rollout=rollout, action="PROMOTE")
        .order_by("created_at")
        .values_list("to_ring", flat=True)
    )
    assert promoted_to == ["ring_5", "ring_25", "ring_100"], story(result)
    # The last ring completes by itself once it has passed its gates after its bake (SPEC §3).
    assert AuditEvent.objects.get(rollout=rollout, action="COMPLETED").actor_name == "saferoll"
    by_ring = result.rollout["deployments"]["by_ring"]
    assert all(by_ring[ring]["exposed"] for ring in ("pilot", "ring_5", "ring_25", "ring_100")), by_ring


def mean_metric(name: str, *, version: str) -> float:
    values = HealthCheck.objects.filter(version=version).values_list("metrics", flat=True)
    return statistics.fmean(metrics[name] for metrics in values)


def test_the_disaster_is_rolled_back_by_saferoll_before_it_leaves_ring_5(saferoll_live):
    result = play(DISASTER, *saferoll_live)

    assert result.passed, story(result)
    rollout = Rollout.objects.get(rollout_id=result.rollout["rollout_id"])
    assert rollout.status == "rolled_back"
    rollback = AuditEvent.objects.get(rollout=rollout, action__in=["ROLLBACK", "AUTO_ROLLBACK"])
    assert (rollback.action, rollback.actor_name, rollback.from_ring) == (
        "AUTO_ROLLBACK",
        "saferoll",
        "ring_5",
    )
    assert rollback.reason.startswith("Critical:"), rollback.reason
    # Nobody outside pilot and ring_5 was ever given the release, or ever ran it.
    assert set(DeviceDeployment.objects.filter(rollout=rollout).values_list("ring", flat=True)) == {
        "pilot",
        "ring_5",
    }
    assert not HealthCheck.objects.filter(version="v2.1_buggy").exclude(ring__in=["pilot", "ring_5"]).exists()
    # The simulated devices send the custom KPIs of their model: on the bad release, crash loops the
    # README's example gate (at most 0.05 per check) fails on; a healthy device averages 0.004.
    assert not HealthCheck.objects.exclude(
        metrics__has_keys=["disk_free_pct", "temperature_c", "crash_loops"]
    )
    assert mean_metric("crash_loops", version="v2.1_buggy") > 0.05
    blast = result.rollout["blast_radius"]
    assert (
        blast["exposed"]
        == DeviceDeployment.objects.filter(rollout=rollout).exclude(state="cancelled").count()
    )
    assert blast["spared"] == blast["fleet"] - blast["exposed"] > 0


def test_the_manual_pause_is_resumed_after_the_fix_and_completes(
    live_server_url, autopilot, stable_release, role_groups, capsys
):
    # Through the command, without a token: it makes the local "scenario" release manager itself.
    call_command("scenario", "manual-pause", "--fast", "--api-url", live_server_url, "--seed", "42")

    output = capsys.readouterr().out
    assert "release manager 'scenario'" in output
    assert "Result: PASS (manual-pause)" in output, output
    rollout = Rollout.objects.get(release__version="v2.2")
    assert rollout.status == "completed"
    done = actions(rollout)
    assert not {"ROLLBACK", "AUTO_ROLLBACK"} & set(done), output
    pause = AuditEvent.objects.filter(rollout=rollout, action__in=["PAUSE", "AUTO_PAUSE"]).first()
    assert pause is not None, output
    if pause.action == "PAUSE":
        assert (pause.actor_name, pause.reason, pause.from_ring) == ("scenario", PAUSE_REASON, "ring_5")
    assert done.index("RESUME") > done.index(pause.action)
