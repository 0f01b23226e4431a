"""Plans: what a plan's stages and gates must hold to, the presets, and their audit."""

import datetime as dt

import pytest
from django.test import override_settings

from rollouts.gates import GateConfig
from rollouts.models import RolloutPlan
from rollouts.services import plans
from saferoll.core.errors import ServiceRefused
from saferoll.core.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "A plan needs at least one stage."),
        ("pilot", "A plan needs at least one stage."),
        (["pilot"], "Stage 1 must be an object with a ring name."),
        ([{"bake_minutes": 1}], "Stage 1 needs a ring name."),
        ([{"ring": "pilot"}, {"ring": "pilot"}], "Stage 2: the ring 'pilot' appears twice."),
        ([{"ring": "completed"}], "Stage 1: 'completed' is a rollout state and cannot name a ring."),
        ([{"ring": "created"}], "'created' is a rollout state"),
        (
            [{"ring": "pilot", "bake_minutes": -1}],
            "Stage 1: bake_minutes must be a number of minutes from 0 to 43200 (30 days).",
        ),
        ([{"ring": "pilot", "bake_minutes": 10**15}], "from 0 to 43200 (30 days)."),
        ([{"ring": "pilot\x00"}], "Stage 1 contains a character a plan cannot store"),
        ([{"ring": "a", "rings": ["a", "b\x00"]}], "Stage 1 contains a character a plan cannot store"),
        ([{"ring": "pilot", "description": "\udcff"}], "(NUL or an unpaired surrogate)."),
        ([{"ring": "pilot", "bake_minutes": "5"}], "bake_minutes must be a number"),
        ([{"ring": "pilot", "auto_advance": "yes"}], "auto_advance must be true or false."),
        ([{"ring": "pilot", "speed": 3}], "Stage 1 has unknown setting(s): speed."),
        ([{"ring": "x" * 21}], "is longer than 20"),
        ([{"ring": "a", "cohort": "c", "rings": ["a"]}], "may name a cohort or fleet rings, not both."),
        ([{"ring": "a"}, {"ring": "b", "rings": ["a", "b"]}], "Stage 2 deploys to a a second time."),
    ],
)
def test_it_refuses_stages_that_do_not_hold_together(stages, message):
    with pytest.raises(ServiceRefused) as invalid:
        plans.plan_clean_stages(stages)

    assert message in invalid.value.message
    assert list(invalid.value.errors) == ["stages"]


def test_it_fills_in_the_defaults_of_a_stage():
    assert plans.plan_clean_stages(
        [{"ring": " pilot "}, {"ring": "wide", "bake_minutes": 30, "auto_advance": True}]
    ) == [
        {"ring": "pilot", "bake_minutes": 0, "auto_advance": False},
        {"ring": "wide", "bake_minutes": 30, "auto_advance": True},
    ]


@pytest.mark.parametrize(
    ("gate_config", "message"),
    [
        ({"crash_free_min": 2}, "crash_free_min is a share between 0 and 1."),
        ({"speed": 1}, "Unknown gate setting(s): speed."),
        ({"crash_free_critical": 0.999}, "crash_free_critical must not be above crash_free_min."),
        ([], "gate_config must be an object of gate settings."),
    ],
)
def test_it_refuses_gate_settings_the_gate_engine_does_not_accept(gate_config, message):
    with pytest.raises(ServiceRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        plans.plan_clean_gate_config(gate_config)


def test_it_creates_a_plan_and_audits_it(manager):
    plan = plans.plan_create(
        actor=manager, name="careful", stages=[{"ring": "pilot"}], gate_config={"min_sample": 30}
    )

    event = AuditEvent.objects.get(object_type="rolloutplan")
    assert (event.action, event.actor, event.object_id) == ("CREATE", manager, str(plan.pk))
    assert event.changes["after"]["gate_config"] == {"min_sample": 30}


def test_it_keeps_one_default_plan(manager, plan):
    other = plans.plan_create(actor=manager, name="new-default", stages=[{"ring": "pilot"}], is_default=True)

    assert list(RolloutPlan.objects.filter(is_default=True)) == [other]
    plans.plan_update(plan=plan, actor=manager, is_default=True)
    assert list(RolloutPlan.objects.filter(is_default=True)) == [plan]


def test_it_audits_what_changed_in_a_plan(manager, plan):
    plans.plan_update(plan=plan, actor=manager, description="Faster.", gate_config={"min_sample": 5})

    event = AuditEvent.objects.get(object_type="rolloutplan", action="UPDATE")
    assert event.changes == {
        "before": {
            "description": "",
            "gate_config": plan.gate_config | GateConfig(min_sample=10, min_checks=10).to_dict(),
        },
        "after": {"description": "Faster.", "gate_config": {"min_sample": 5}},
    }
    assert event.reason == "Plan test-plan changed: description, gate_config."


def test_it_writes_no_audit_event_when_nothing_changed(manager, plan):
    plans.plan_update(plan=plan, actor=manager, description=plan.description)

    assert not AuditEvent.objects.filter(action="UPDATE").exists()


def test_it_refuses_half_an_activation_window(manager):
    with pytest.raises(ServiceRefused, match="both a start and an end"):
        plans.plan_create(
            actor=manager, name="night", stages=[{"ring": "pilot"}], activation_window_start=dt.time(2)
        )


# --- Presets -------------------------------------------------------------------------------------


def test_it_stores_the_three_presets_once():
    first = plans.ensure_presets()
    again = plans.ensure_presets()

    assert [plan.name for plan in first] == ["demo", "production", "staging"]
    assert [plan.pk for plan in again] == [plan.pk for plan in first]
    assert RolloutPlan.objects.count() == 3
    assert list(RolloutPlan.objects.filter(is_default=True).values_list("name", flat=True)) == ["demo"]
    assert (
        AuditEvent.objects.filter(object_type="rolloutplan", action="CREATE", actor_name="saferoll").count()
        == 3
    )


def test_it_leaves_an_existing_default_plan_the_default(plan):
    plans.ensure_presets()

    assert list(RolloutPlan.objects.filter(is_default=True)) == [plan]


def test_it_never_changes_a_preset_someone_edited(manager):
    plans.ensure_presets()
    demo = RolloutPlan.objects.get(name="demo")
    plans.plan_update(plan=demo, actor=manager, stages=[{"ring": "pilot", "bake_minutes": 9}])

    plans.ensure_presets()

    assert RolloutPlan.objects.get(name="demo").stages == [
        {"ring": "pilot", "bake_minutes": 9, "auto_advance": False}
    ]


def test_it_builds_the_presets_over_the_fleets_rings():
    by_name = {preset["name"]: preset for preset in plans.preset_definitions()}

    demo, production, staging = by_name["demo"], by_name["production"], by_name["staging"]
    assert [stage["ring"] for stage in demo["stages"]] == ["pilot", "ring_5", "ring_25", "ring_100"]
    # The pilot does not bake, so the seed's flow promotes it as soon as the gates pass.
    assert [(stage["bake_minutes"], stage["auto_advance"]) for stage in demo["stages"]] == [
        (0, True),
        (1, True),
        (1, True),
        (1, True),
    ]
    assert [stage["bake_minutes"] for stage in production["stages"]] == [240, 480, 1440, 1440]
    assert not any(stage["auto_advance"] for stage in production["stages"])
    assert GateConfig.from_dict(production["gate_config"]).min_sample == 50
    assert GateConfig.from_dict(production["gate_config"]).consecutive_failures_to_pause == 2
    strict, default = GateConfig.from_dict(production["gate_config"]), GateConfig()
    # Stricter where a healthy fleet still passes: the critical lines, boots and latency.
    assert strict.crash_free_critical > default.crash_free_critical
    assert strict.boot_success_min > default.boot_success_min
    assert strict.latency_max_ms < default.latency_max_ms
    assert [stage["ring"] for stage in staging["stages"]] == ["pilot", "ring_25", "ring_100"]
    # Rings are cumulative: ring_5's devices go out with ring_25's rather than never.
    assert staging["stages"][1]["rings"] == ["ring_5", "ring_25"]
    assert all(stage["auto_advance"] for stage in staging["stages"])
    for preset in by_name.values():
        assert plans.plan_clean_stages(preset["stages"])
        plans.plan_clean_gate_config(preset["gate_config"])


@override_settings(SAFEROLL_RING_SHARES={"canary": 2, "early": 8, "wide": 40, "all": 50})
def test_it_follows_a_fleet_with_other_rings():
    by_name = {preset["name"]: preset for preset in plans.preset_definitions()}

    assert [stage["ring"] for stage in by_name["demo"]["stages"]] == ["canary", "early", "wide", "all"]
    assert by_name["staging"]["stages"][1] == {
        "ring": "wide",
        "rings": ["early", "wide"],
        "bake_minutes": 5,
        "auto_advance": True,
    }
