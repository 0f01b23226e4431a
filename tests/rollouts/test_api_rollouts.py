"""The rollout API of 000 §5.2: shapes, the full flow of 000 §13.2, refusals, and who may do what."""

import pytest

from rollouts.choices import DeploymentState
from rollouts.models import DeviceDeployment, Evaluation, Rollout
from rollouts.services import lifecycle
from saferoll.core import roles
from saferoll.core.models import AuditEvent
from tests.conftest import client_for
from tests.factories import ReleaseFactory, RolloutPlanFactory, UserFactory
from tests.rollouts.helpers import age_out_checks, report

pytestmark = pytest.mark.django_db


def audit_actions(rollout_id: str) -> list[str]:
    return list(
        AuditEvent.objects.filter(rollout__rollout_id=rollout_id)
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )


# --- The flow of 000 §13.2 -----------------------------------------------------------------------


def test_it_runs_a_rollout_from_creation_to_the_second_ring(release_manager, plan, release, fleet):
    response = release_manager.post("/api/rollouts", {"version": "v2.1"}, format="json")
    assert response.status_code == 201
    rollout_id = response.json()["rollout_id"]

    response = release_manager.post(f"/api/rollouts/{rollout_id}/start")
    assert response.status_code == 200
    assert response.json()["state"] == "pilot"

    # The pilot devices install the release and report healthy checks (000 §8.3 "normal").
    report(Rollout.objects.get(rollout_id=rollout_id), "pilot", crash_free=0.995, latency=50)

    response = release_manager.get(f"/api/rollouts/{rollout_id}/should_promote")
    assert response.status_code == 200
    assert response.json()["action"] == "PROMOTE"

    response = release_manager.post(f"/api/rollouts/{rollout_id}/promote")
    assert response.status_code == 200
    assert response.json()["state"] == "ring_5"
    assert [event["action"] for event in response.json()["events"]] == ["CREATED", "START", "PROMOTE"]


# --- Create, list, detail ------------------------------------------------------------------------


def test_it_creates_a_rollout_in_the_shape_of_the_contract(release_manager, plan, release):
    response = release_manager.post("/api/rollouts", {"version": "v2.1"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["rollout_id"].startswith("rollout_")
    assert (body["version"], body["state"], body["current_ring"]) == ("v2.1", "created", None)
    assert body["created_at"]
    assert [(event["action"], event["actor"]) for event in body["events"]] == [
        ("CREATED", "release_manager-user")
    ]
    assert body["events"][0]["timestamp"]
    assert body["plan"] == "test-plan"
    assert audit_actions(body["rollout_id"]) == ["CREATED"]


def test_it_creates_a_rollout_following_the_plan_named(release_manager, plan, release):
    RolloutPlanFactory(name="slow", stages=[{"ring": "pilot", "bake_minutes": 60}])

    response = release_manager.post("/api/rollouts", {"version": "v2.1", "plan": "slow"}, format="json")

    assert response.status_code == 201
    assert response.json()["stages"] == [{"ring": "pilot", "bake_minutes": 60, "auto_advance": False}]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"version": "v9.9"}, "version", "There is no release v9.9."),
        ({}, "version", "This field is required."),
        ({"version": "v2.1", "plan": "nope"}, "plan", "There is no plan named nope."),
        # PostgreSQL refuses NUL in any text: such a name is answered without a lookup.
        ({"version": "v2.1\x00"}, "version", "There is no release v2.1\\x00."),
        ({"version": "v2.1", "plan": "\x00"}, "plan", "There is no plan named \\x00."),
    ],
)
def test_it_rejects_a_rollout_of_an_unknown_release_or_plan(
    release_manager, plan, release, body, field, message
):
    response = release_manager.post("/api/rollouts", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "Invalid input.", "fields": {field: [message]}}
    assert not Rollout.objects.exists()


def test_it_rejects_a_rollout_of_a_broken_plan(release_manager, release):
    RolloutPlanFactory(name="broken", stages=[])

    response = release_manager.post("/api/rollouts", {"version": "v2.1", "plan": "broken"}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"plan": ["A plan needs at least one stage."]}


def test_it_lists_rollouts_under_the_key_rollouts(viewer, started, plan, manager):
    other = lifecycle.rollout_create(release=ReleaseFactory(version="v3.0"), plan=plan, actor=manager)

    response = viewer.get("/api/rollouts")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"rollouts", "count", "next", "previous"}
    assert body["count"] == 2
    assert [r["rollout_id"] for r in body["rollouts"]] == [other.rollout_id, started.rollout_id]
    assert body["rollouts"][1] == {
        **body["rollouts"][1],
        "version": "v2.1",
        "state": "pilot",
        "current_ring": "pilot",
        "status": "active",
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=pilot", ["started"]),
        ("state=created", ["other"]),
        ("status=active", ["started"]),
        ("version=v3.0", ["other"]),
        ("active=true", ["other", "started"]),
        ("state=rolled_back", []),
        ("created_after=2000-01-01T00:00:00Z", ["other", "started"]),
        # An offset Python reads but PostgreSQL would refuse: the moment is sent in UTC.
        ("created_before=2999-01-01T00:00:00%2B23:59", ["other", "started"]),
    ],
)
def test_it_filters_rollouts(viewer, started, plan, manager, query, expected):
    rollouts = {
        "started": started,
        "other": lifecycle.rollout_create(release=ReleaseFactory(version="v3.0"), plan=plan, actor=manager),
    }

    response = viewer.get(f"/api/rollouts?{query}")

    assert response.status_code == 200
    assert sorted(r["rollout_id"] for r in response.json()["rollouts"]) == sorted(
        rollouts[name].rollout_id for name in expected
    )


def test_it_refuses_a_moment_that_leaves_the_calendar_once_in_utc(viewer, started):
    response = viewer.get("/api/rollouts", {"created_after": "0001-01-01T00:00:00+05:00"})

    assert response.status_code == 400
    assert response.json()["fields"] == {
        "created_after": ["This moment falls outside the years 1 to 9999 once converted to UTC."]
    }


def test_it_pages_the_list(viewer, plan, manager):
    for index in range(3):
        lifecycle.rollout_create(release=ReleaseFactory(version=f"v4.{index}"), plan=plan, actor=manager)

    body = viewer.get("/api/rollouts?page_size=2").json()

    assert (len(body["rollouts"]), body["count"], body["previous"]) == (2, 3, None)
    assert "page=2" in body["next"]


def test_it_shows_a_rollout_with_its_timeline_blast_radius_and_deployments(viewer, started, manager, fleet):
    report(started, "pilot")
    lifecycle.rollout_promote(rollout=started, actor=manager, reason="Pilot is fine.")
    first_ring_5 = DeviceDeployment.objects.filter(rollout=started, ring="ring_5").order_by("pk").first()
    DeviceDeployment.objects.filter(pk=first_ring_5.pk).update(state=DeploymentState.DOWNLOADING)

    response = viewer.get(f"/api/rollouts/{started.rollout_id}")

    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["current_ring"], body["next_ring"], body["plan"]) == (
        "ring_5",
        "ring_5",
        "ring_25",
        "test-plan",
    )
    assert [stage["ring"] for stage in body["stages"]] == ["pilot", "ring_5", "ring_25", "ring_100"]
    assert body["gate_config"]["crash_free_min"] == 0.99
    fleet_size = sum(len(devices) for devices in fleet.values())
    assert body["blast_radius"] == {
        "exposed": 21,
        "targeted": 32,
        "fleet": fleet_size,
        "spared": fleet_size - 21,
    }
    assert body["deployments"]["by_state"]["activated"] == 20
    assert body["deployments"]["by_state"]["downloading"] == 1
    assert body["deployments"]["by_state"]["pending"] == 11
    assert body["deployments"]["by_ring"]["ring_5"] == {"targeted": 12, "exposed": 1, "released": 12}
    assert body["deployments"]["by_ring"]["ring_100"] == {"targeted": 0, "exposed": 0, "released": 0}
    promote = body["events"][-1]
    assert {key: promote[key] for key in ("action", "from_ring", "to_ring", "reason", "actor")} == {
        "action": "PROMOTE",
        "from_ring": "pilot",
        "to_ring": "ring_5",
        "reason": "Pilot is fine.",
        "actor": "rm",
    }
    assert promote["evaluation"]["overall"] == "PASS"
    assert promote["timestamp"]


def test_it_answers_not_found_for_an_unknown_rollout(viewer):
    response = viewer.get("/api/rollouts/rollout_nope")

    assert response.status_code == 404
    assert response.json() == {"error": "Rollout rollout_nope not found."}


def test_it_refuses_people_who_are_not_signed_in(api, started):
    assert api.get("/api/rollouts").status_code == 401
    assert api.post(f"/api/rollouts/{started.rollout_id}/pause").status_code == 401


def test_it_refuses_signed_in_people_without_a_role(started):
    client = client_for(UserFactory(username="nobody"))

    assert client.get("/api/rollouts").status_code == 403


# --- Commands and their refusals -----------------------------------------------------------------


def test_it_pauses_with_the_reason_given_and_answers_with_the_rollout(operator, started):
    response = operator.post(
        f"/api/rollouts/{started.rollout_id}/pause",
        {"reason": "Manual pause for investigation"},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["rollout_id"], body["state"], body["current_ring"]) == (
        started.rollout_id,
        "paused",
        "pilot",
    )
    assert body["events"][-1]["action"] == "PAUSE"
    assert body["events"][-1]["reason"] == "Manual pause for investigation"


def test_it_rolls_back_with_a_sentence_when_no_reason_is_given(release_manager, started):
    response = release_manager.post(f"/api/rollouts/{started.rollout_id}/rollback")

    assert response.status_code == 200
    assert response.json()["state"] == "rolled_back"
    assert response.json()["events"][-1]["reason"] == "Rolled back by release_manager-user."


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("start", "it is paused in pilot; it has already started."),
        ("promote", "it is paused in pilot; resume it first."),
        ("pause", "it is paused in pilot; it is already paused."),
    ],
)
def test_it_answers_conflict_with_a_sentence_to_a_command_the_state_does_not_allow(
    release_manager, started, manager, command, message
):
    lifecycle.rollout_pause(rollout=started, actor=manager)

    response = release_manager.post(f"/api/rollouts/{started.rollout_id}/{command}")

    assert response.status_code == 409
    verb = "roll back" if command == "rollback" else command
    assert response.json() == {"error": f"Cannot {verb} {started.rollout_id}: {message}"}
    assert audit_actions(started.rollout_id)[-1] == f"{command.upper()}_REFUSED"


@pytest.mark.parametrize("command", ["start", "promote", "pause", "resume", "rollback"])
def test_it_answers_conflict_to_any_command_on_a_rolled_back_rollout(
    release_manager, started, manager, command
):
    lifecycle.rollout_rollback(rollout=started, actor=manager, reason="Bad.")

    response = release_manager.post(f"/api/rollouts/{started.rollout_id}/{command}")

    assert response.status_code == 409
    assert "it is rolled back; a finished rollout cannot change." in response.json()["error"]


def test_it_answers_conflict_with_the_evaluation_when_the_gates_refuse_a_promote(release_manager, started):
    report(started, "pilot", crash_free=0.985)

    response = release_manager.post(f"/api/rollouts/{started.rollout_id}/promote")

    assert response.status_code == 409
    body = response.json()
    assert set(body) == {"error", "reason", "evaluation"}
    assert body["error"] == "Cannot promote: PAUSE"
    assert body["reason"].startswith("SLO gates failing but not critical: Crash-free rate 98.5%")
    assert body["evaluation"]["ring"] == "pilot"
    assert body["evaluation"]["overall"] == "FAIL"
    assert body["evaluation"]["gates"]["crash_free_rate"] == {
        "value": 0.985,
        "threshold": 0.99,
        "operator": ">=",
        "passed": False,
        "critical_threshold": 0.95,
        "critical": False,
    }
    assert Rollout.objects.get(pk=started.pk).state == "pilot"
    assert audit_actions(started.rollout_id)[-1] == "PROMOTE_REFUSED"


def test_it_answers_conflict_to_a_promote_while_the_ring_has_too_little_data(release_manager, started):
    response = release_manager.post(f"/api/rollouts/{started.rollout_id}/promote")

    assert response.status_code == 409
    assert response.json()["error"] == "Cannot promote: WAIT"
    assert response.json()["evaluation"]["overall"] == "WAIT"


def test_it_refuses_to_resume_a_failing_ring_and_resumes_once_it_is_healthy(
    release_manager, started, manager
):
    report(started, "pilot", crash_free=0.97)
    lifecycle.rollout_pause(rollout=started, actor=manager)

    refused = release_manager.post(f"/api/rollouts/{started.rollout_id}/resume")
    age_out_checks()
    report(started, "pilot")
    resumed = release_manager.post(f"/api/rollouts/{started.rollout_id}/resume")

    assert refused.status_code == 409
    assert refused.json()["error"] == "Cannot resume: PAUSE"
    assert resumed.status_code == 200
    assert resumed.json()["state"] == "pilot"
    assert audit_actions(started.rollout_id)[-2:] == ["RESUME_REFUSED", "RESUME"]


def test_it_decides_should_promote_in_the_shape_of_the_contract_without_storing_it(viewer, started):
    report(started, "pilot")

    response = viewer.get(f"/api/rollouts/{started.rollout_id}/should_promote")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"action", "reason", "evaluation"}
    assert body["action"] == "PROMOTE"
    assert body["evaluation"]["overall"] == "PASS"
    assert body["evaluation"]["gates"]["median_latency_ms"] == {
        "value": 50.0,
        "threshold": 500,
        "operator": "<=",
        "passed": True,
        "critical_threshold": 1000,
        "critical": False,
    }
    assert body["evaluation"]["health"]["ring"] == "pilot"
    assert body["evaluation"]["health"]["total_devices"] == 20
    assert not Evaluation.objects.exists()


def test_it_shows_the_health_score_beside_the_gates_it_is_weighed_from(viewer, started):
    report(started, "pilot", crash_free=0.97)

    body = viewer.get(f"/api/rollouts/{started.rollout_id}/should_promote").json()

    assert body["action"] == "PAUSE"
    score = body["evaluation"]["score"]
    assert set(score["parts"]) <= set(body["evaluation"]["gates"])
    # Crash-free halfway between its goal and its critical line: a quarter of its weight of 3.
    assert score["parts"]["crash_free_rate"] == 0.25
    assert score["weights"]["crash_free_rate"] == 3.0
    assert score["weights"] == {
        "crash_free_rate": 3.0,
        "boot_success_rate": 3.0,
        "median_latency_ms": 2.0,
        "reporting_rate": 2.0,
        "deployment_failure_rate": 1.0,
        "sev1_incidents": 1.0,
    }
    # (12 − 3 × 0.75) / 12
    assert score["value"] == 81


def test_it_answers_conflict_to_should_promote_before_the_start(viewer, rollout):
    response = viewer.get(f"/api/rollouts/{rollout.rollout_id}/should_promote")

    assert response.status_code == 409
    assert "no ring is deployed" in response.json()["error"]


# --- Who may do what -----------------------------------------------------------------------------

ALLOWED = {
    roles.VIEWER: set(),
    roles.OPERATOR: {"pause"},
    roles.RELEASE_MANAGER: {"create", "start", "promote", "pause", "resume", "rollback"},
    roles.ADMIN: {"create", "start", "promote", "pause", "resume", "rollback"},
}
COMMANDS = ["create", "start", "promote", "pause", "resume", "rollback"]


def prepare(command: str, rollout: Rollout, manager) -> str:
    """Bring the rollout to a state in which `command` succeeds; return the path to post to."""
    if command == "create":
        return "/api/rollouts"
    if command != "start":
        lifecycle.rollout_start(rollout=rollout, actor=manager)
    if command == "promote":
        report(rollout, "pilot")
    if command == "resume":
        lifecycle.rollout_pause(rollout=rollout, actor=manager)
    return f"/api/rollouts/{rollout.rollout_id}/{command}"


EXPECTED_ACTION = {
    "create": "CREATED",
    "start": "START",
    "promote": "PROMOTE",
    "pause": "PAUSE",
    "resume": "RESUME",
    "rollback": "ROLLBACK",
}


@pytest.mark.parametrize("role", roles.ROLES)
@pytest.mark.parametrize("command", COMMANDS)
def test_it_lets_each_role_do_exactly_what_it_may(persona, rollout, manager, role, command):
    client = persona(role)
    path = prepare(command, rollout, manager)
    before = AuditEvent.objects.count()

    response = client.post(path, {"version": "v2.1", "reason": "Checking roles."}, format="json")

    if command in ALLOWED[role]:
        assert response.status_code == (201 if command == "create" else 200), response.json()
        event = AuditEvent.objects.order_by("-id").first()
        assert (event.action, event.actor) == (EXPECTED_ACTION[command], client.user)
        assert event.rollout.rollout_id == response.json()["rollout_id"]
        assert AuditEvent.objects.count() == before + 1
    else:
        assert response.status_code == 403
        assert "Your role does not allow you to" in response.json()["error"]
        assert AuditEvent.objects.count() == before


@pytest.mark.parametrize("role", [roles.RELEASE_MANAGER, roles.ADMIN])
@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "create"])
def test_it_answers_not_found_to_a_command_on_an_unknown_rollout(persona, role, command):
    response = persona(role).post(f"/api/rollouts/rollout_missing/{command}")

    assert response.status_code == 404
    assert response.json() == {"error": "Rollout rollout_missing not found."}


def test_it_answers_not_found_to_the_operators_pause_of_an_unknown_rollout(operator):
    assert operator.post("/api/rollouts/rollout_missing/pause").status_code == 404


@pytest.mark.parametrize("role", roles.ROLES)
def test_it_lets_every_role_read(persona, started, role):
    client = persona(role)

    assert client.get("/api/rollouts").status_code == 200
    assert client.get(f"/api/rollouts/{started.rollout_id}").status_code == 200
    assert client.get(f"/api/rollouts/{started.rollout_id}/should_promote").status_code == 200


# --- The chart -----------------------------------------------------------------------------------


def test_it_charts_the_health_of_the_rollouts_devices_minute_by_minute(viewer, started):
    report(started, "pilot", crash_free=0.98)

    response = viewer.get(f"/api/rollouts/{started.rollout_id}/series?minutes=10")

    assert response.status_code == 200
    body = response.json()
    assert (body["ring"], body["version"], body["minutes"], len(body["points"])) == ("pilot", "v2.1", 10, 10)
    assert body["thresholds"]["crash_free_min"] == 0.99
    assert body["points"][-1]["total_devices"] == 20
    assert body["points"][-1]["crash_free_rate"] == pytest.approx(0.98)
    assert body["points"][0]["crash_free_rate"] is None


def test_it_charts_only_the_ring_asked_for(viewer, started):
    report(started, "pilot")

    assert (
        viewer.get(f"/api/rollouts/{started.rollout_id}/series?ring=ring_5").json()["points"][-1][
            "total_devices"
        ]
        == 0
    )
    assert (
        viewer.get(f"/api/rollouts/{started.rollout_id}/series?ring=all").json()["points"][-1][
            "total_devices"
        ]
        == 20
    )
    assert viewer.get(f"/api/rollouts/{started.rollout_id}/series?ring=nope").status_code == 404
    assert viewer.get(f"/api/rollouts/{started.rollout_id}/series?minutes=500").status_code == 400
