"""Plans over REST: every role reads; release managers and admins create and change, audited."""

import pytest

from rollouts.gates import GateConfig
from rollouts.models import RolloutPlan
from saferoll.core import roles
from saferoll.core.models import AuditEvent

pytestmark = pytest.mark.django_db

NEW_PLAN = {
    "name": "five-steps",
    "description": "003: 1/5/20/50/100",
    "stages": [
        {"ring": f"r{share}", "bake_minutes": 30, "auto_advance": True} for share in (1, 5, 20, 50, 100)
    ],
    "gate_config": {"min_sample": 25, "crash_free_min": 0.995},
}


def test_it_lists_plans_with_their_effective_gates(viewer, plan):
    response = viewer.get("/api/plans")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"plans", "count", "next", "previous"}
    assert body["plans"][0]["name"] == "test-plan"
    assert body["plans"][0]["effective_gate_config"]["crash_free_min"] == 0.99


def test_it_shows_a_plan_by_name_or_by_id(viewer, plan):
    assert viewer.get("/api/plans/test-plan").json()["id"] == plan.pk
    assert viewer.get(f"/api/plans/{plan.pk}").json()["name"] == "test-plan"


def test_it_answers_not_found_for_an_unknown_plan(viewer, db):
    response = viewer.get("/api/plans/nope")

    assert response.status_code == 404
    assert response.json() == {"error": "Plan nope not found."}


def test_it_answers_not_found_for_a_key_of_digits_that_are_not_ascii(viewer, db):
    response = viewer.get("/api/plans/²")

    assert response.status_code == 404
    assert response.json() == {"error": "Plan ² not found."}


def test_it_creates_a_plan(release_manager):
    response = release_manager.post("/api/plans", NEW_PLAN, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert [stage["ring"] for stage in body["stages"]] == ["r1", "r5", "r20", "r50", "r100"]
    assert body["effective_gate_config"]["min_sample"] == 25
    assert body["effective_gate_config"]["crash_free_critical"] == 0.95
    event = AuditEvent.objects.get(object_type="rolloutplan")
    assert (event.action, event.actor, event.object_id) == ("CREATE", release_manager.user, str(body["id"]))


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"stages": []}, {"stages": ["A plan needs at least one stage."]}),
        (
            {"stages": [{"ring": "paused"}]},
            {"stages": ["Stage 1: 'paused' is a rollout state and cannot name a ring."]},
        ),
        ({"gate_config": {"min_sample": 0}}, {"gate_config": ["min_sample must be at least 1."]}),
        ({"gate_config": {"window": 5}}, {"gate_config": ["Unknown gate setting(s): window."]}),
        (
            {"gate_config": {"score_weights": {"crash_free_rate": -2}}},
            {"gate_config": ["score_weights.crash_free_rate must not be negative."]},
        ),
        (
            {"gate_config": {"score_weights": {"kpi:disk_free": 1}}},
            {
                "gate_config": [
                    "score_weights names no gate of this plan: kpi:disk_free. "
                    f"Gates: {', '.join(sorted(GateConfig().gate_names()))}."
                ]
            },
        ),
        # Text PostgreSQL's JSON cannot hold, and a gate window its evaluations could not compute.
        (
            {"stages": [{"ring": "pilot\x00"}]},
            {"stages": ["Stage 1 contains a character a plan cannot store (NUL or an unpaired surrogate)."]},
        ),
        (
            {"gate_config": {"window_minutes": 10**15}},
            {"gate_config": ["window_minutes must be between 1 and 1440 (a day)."]},
        ),
        ({"name": "test-plan"}, {"name": ["rollout plan with this name already exists."]}),
    ],
)
def test_it_rejects_a_plan_that_does_not_hold_together(release_manager, plan, change, fields):
    response = release_manager.post("/api/plans", {**NEW_PLAN, **change}, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "Invalid input.", "fields": fields}
    assert not AuditEvent.objects.filter(object_type="rolloutplan").exists()


def test_it_keeps_a_plans_health_score_weights(release_manager):
    disk = {"metric": "disk_free", "operator": ">=", "threshold": 10}
    gates = {"custom_gates": [disk], "score_weights": {"median_latency_ms": 4, "kpi:disk_free": 0.5}}
    plan = {**NEW_PLAN, "gate_config": gates}

    response = release_manager.post("/api/plans", plan, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["effective_gate_config"]["score_weights"] == {
        "median_latency_ms": 4.0,
        "kpi:disk_free": 0.5,
    }


def test_it_keeps_an_activation_window_in_utc_times_of_day(release_manager, plan):
    response = release_manager.patch(
        "/api/plans/test-plan",
        {"activation_window_start": "02:00", "activation_window_end": "04:30:15.5"},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["activation_window_start"], body["activation_window_end"]) == ("02:00:00", "04:30:15.500000")


def test_it_refuses_a_window_time_with_an_offset_that_would_be_dropped(release_manager, plan):
    response = release_manager.patch(
        "/api/plans/test-plan",
        {"activation_window_start": "02:00+05:00", "activation_window_end": "04:00"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["fields"] == {
        "activation_window_start": ["Give the time of day in UTC as HH:MM or HH:MM:SS, without an offset."]
    }


def test_it_changes_a_plan_and_audits_the_change(release_manager, plan):
    response = release_manager.patch(
        "/api/plans/test-plan",
        {"stages": [{"ring": "pilot", "bake_minutes": 5}], "description": "Short."},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["stages"] == [{"ring": "pilot", "bake_minutes": 5, "auto_advance": False}]
    event = AuditEvent.objects.get(object_type="rolloutplan")
    assert (event.action, event.actor) == ("UPDATE", release_manager.user)
    assert event.changes["after"]["description"] == "Short."
    assert sorted(event.changes["after"]) == ["description", "stages"]


def test_it_rejects_a_change_that_breaks_the_plan(release_manager, plan):
    response = release_manager.patch(
        "/api/plans/test-plan", {"gate_config": {"crash_free_min": 3}}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["fields"] == {"gate_config": ["crash_free_min is a share between 0 and 1."]}
    assert RolloutPlan.objects.get(pk=plan.pk).gate_config == plan.gate_config


def test_it_keeps_a_plans_name(release_manager, plan):
    response = release_manager.patch("/api/plans/test-plan", {"name": "renamed"}, format="json")

    assert response.status_code == 400
    assert RolloutPlan.objects.filter(name="test-plan").exists()


@pytest.mark.parametrize("role", roles.ROLES)
def test_it_lets_only_release_managers_and_admins_write_plans(persona, plan, role):
    client = persona(role)
    may_write = role in (roles.RELEASE_MANAGER, roles.ADMIN)

    created = client.post("/api/plans", NEW_PLAN, format="json")
    changed = client.patch("/api/plans/test-plan", {"description": "By " + role}, format="json")

    assert client.get("/api/plans").status_code == 200
    assert (created.status_code, changed.status_code) == ((201, 200) if may_write else (403, 403))
    assert AuditEvent.objects.filter(object_type="rolloutplan").count() == (2 if may_write else 0)


def test_it_answers_not_found_to_a_change_of_an_unknown_plan(release_manager, db):
    assert release_manager.patch("/api/plans/nope", {"description": "x"}, format="json").status_code == 404


def test_it_does_not_replace_or_delete_plans(admin_client, plan):
    assert admin_client.put("/api/plans/test-plan", {}, format="json").status_code == 405
    assert admin_client.delete("/api/plans/test-plan").status_code == 405
