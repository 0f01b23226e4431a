"""Stored evaluations over REST: listed, filtered, read; never written through the API."""

import pytest

from rollouts.choices import EvaluationSource
from rollouts.services import lifecycle
from saferoll.core import roles
from tests.factories import EvaluationFactory, ReleaseFactory
from tests.rollouts.helpers import report

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluations(started, manager, plan):
    """A refused promote (PAUSE) then, once healthy, a promote (PROMOTE) of one rollout, and an
    autopilot evaluation of another."""
    report(started, "pilot", crash_free=0.985)
    with pytest.raises(lifecycle.GatesRefused):
        lifecycle.rollout_promote(rollout=started, actor=manager)
    other = lifecycle.rollout_create(release=ReleaseFactory(version="v5.0"), plan=plan, actor=manager)
    EvaluationFactory(rollout=other, ring="ring_5", action="WAIT", source=EvaluationSource.AUTOPILOT)
    return started, other


def test_it_lists_evaluations_newest_first_with_their_detail(viewer, evaluations):
    started, other = evaluations

    response = viewer.get("/api/evaluations")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"evaluations", "count", "next", "previous"}
    assert [(e["rollout_id"], e["action"]) for e in body["evaluations"]] == [
        (other.rollout_id, "WAIT"),
        (started.rollout_id, "PAUSE"),
    ]
    refused = body["evaluations"][1]
    assert refused["ring"] == "pilot"
    assert refused["source"] == "request"
    assert refused["evaluation"]["gates"]["crash_free_rate"]["passed"] is False
    assert refused["reason"].startswith("SLO gates failing")
    assert refused["evaluation"]["score"]["value"] < 100
    assert refused["evaluation"]["score"]["parts"]["crash_free_rate"] < 0.5


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("action=PAUSE", ["PAUSE"]),
        ("ring=ring_5", ["WAIT"]),
        ("source=autopilot", ["WAIT"]),
        ("action=PROMOTE", []),
        # An offset Python reads but PostgreSQL would refuse: the moment is sent in UTC.
        ("created_after=2000-01-01T00:00:00-23:59&source=autopilot", ["WAIT"]),
    ],
)
def test_it_filters_evaluations(viewer, evaluations, query, expected):
    response = viewer.get(f"/api/evaluations?{query}")

    assert [e["action"] for e in response.json()["evaluations"]] == expected


def test_it_filters_evaluations_by_rollout(viewer, evaluations):
    started, _ = evaluations

    response = viewer.get(f"/api/evaluations?rollout_id={started.rollout_id}")

    assert [e["rollout_id"] for e in response.json()["evaluations"]] == [started.rollout_id]


def test_it_shows_one_evaluation(viewer, evaluations):
    started, _ = evaluations
    evaluation = started.evaluations.get()

    response = viewer.get(f"/api/evaluations/{evaluation.pk}")

    assert response.status_code == 200
    assert response.json()["id"] == evaluation.pk
    assert response.json()["evaluation"] == evaluation.detail


def test_it_answers_not_found_for_an_unknown_evaluation(viewer, db):
    response = viewer.get("/api/evaluations/999999")

    assert response.status_code == 404
    assert response.json() == {"error": "Evaluation 999999 not found."}


@pytest.mark.parametrize("role", roles.ROLES)
def test_it_lets_every_role_read_evaluations_and_nobody_write_them(persona, evaluations, role):
    client = persona(role)
    evaluation = evaluations[0].evaluations.get()

    assert client.get("/api/evaluations").status_code == 200
    assert client.post("/api/evaluations", {}, format="json").status_code in (403, 405)
    assert client.delete(f"/api/evaluations/{evaluation.pk}").status_code in (403, 405)
    assert evaluations[0].evaluations.count() == 1
