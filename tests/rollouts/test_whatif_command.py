"""`manage.py whatif`: a plan by name (stored, else a preset), the table on stdout, the figures as
JSON, and clear errors for bad arguments."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from rollouts.services import plans
from tests.factories import DEMO_STAGES

pytestmark = pytest.mark.django_db


def whatif(**options) -> str:
    out = io.StringIO()
    call_command("whatif", stdout=out, **{"runs": 4, "seed": 1, "fleet": 5000, "workers": 1, **options})
    return out.getvalue()


def test_it_prints_the_table_and_writes_the_figures(tmp_path):
    target = tmp_path / "figures.json"

    printed = whatif(plan="demo", json=target)

    assert "What if: plan demo, 4 runs, 5,000 devices" in printed
    assert "stopped before ring_25" in printed
    assert "overall" in printed
    figures = json.loads(target.read_text())
    assert figures["safety.runs"] == {"value": 4, "unit": "runs"}
    assert {"value", "unit"} == set(figures["safety.good_halted"])


def test_a_stored_plan_comes_before_the_preset_of_the_same_name():
    plans.plan_create(
        actor=None,
        name="demo",
        stages=[dict(stage) for stage in DEMO_STAGES],
        gate_config={"crash_free_min": 0.9999, "crash_free_critical": 0.5, "baseline_comparison": False},
    )

    printed = whatif(plan="demo", runs=6, outside_events=0)

    overall = next(line for line in printed.splitlines() if line.startswith("overall"))
    # Every run halts: no healthy ring is 99.99 % crash-free.
    assert overall.split()[1:3] == ["6", "6"]


def test_the_same_seed_prints_the_same_table():
    first = whatif(plan="staging", seed=5)
    again = whatif(plan="staging", seed=5)

    assert first.splitlines()[:-1] == again.splitlines()[:-1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"plan": "no-such-plan"}, "No plan or preset is called 'no-such-plan'"),
        ({"plan": "demo", "runs": 0}, "--runs must be at least 1"),
        ({"plan": "demo", "outside_events": 1.5}, "between 0 and 1"),
        ({"plan": "demo", "outside_events": -0.2}, "between 0 and 1"),
        ({"plan": "demo", "fleet": 0}, "--fleet must be at least 1"),
    ],
)
def test_it_refuses_bad_arguments_with_a_clear_error(options, message):
    with pytest.raises(CommandError, match=message):
        whatif(**options)


def test_a_plan_whose_gates_do_not_parse_is_an_error_not_a_crash():
    plan = plans.plan_create(actor=None, name="broken", stages=[dict(stage) for stage in DEMO_STAGES])
    type(plan).objects.filter(pk=plan.pk).update(gate_config={"crash_free_min": "high"})

    with pytest.raises(CommandError, match="Plan broken: crash_free_min must be a number"):
        whatif(plan="broken")
