"""Custom KPI gates of a rollout: its ring health averages the metrics its plan gates on, the gates
judge them, the evaluation and the series carry them, and a plan refuses a bad definition."""

import pytest

from rollouts.gates import Action, GateConfig
from rollouts.models import Evaluation, RolloutPlan
from rollouts.selectors import rollout_ring_health
from rollouts.services import lifecycle
from tests.factories import HealthCheckFactory
from tests.rollouts.helpers import activate

pytestmark = pytest.mark.django_db

DISK_GATE = {
    "metric": "disk_free_pct",
    "label": "Disk free",
    "operator": ">=",
    "threshold": 20,
    "critical_threshold": 5,
    "rolls_back": True,
}


@pytest.fixture
def kpi_started(plan, started):
    """The started rollout, its frozen gates carrying a custom KPI gate on free disk."""
    started.gate_config = GateConfig.from_dict(
        {"min_sample": 10, "min_checks": 10, "custom_gates": [DISK_GATE]}
    ).to_dict()
    started.save(update_fields=["gate_config"])
    return started


def report_disk(rollout, disk_free_pct: float | None) -> None:
    """Every pilot device activates the release and sends one healthy check with its free disk."""
    for deployment in activate(rollout, "pilot"):
        HealthCheckFactory(
            device=deployment.device,
            version=rollout.release.version,
            metrics={} if disk_free_pct is None else {"disk_free_pct": disk_free_pct, "crash_loops": 3.0},
        )


def test_the_ring_health_of_a_rollout_averages_the_metrics_its_gates_name(kpi_started):
    report_disk(kpi_started, 42.0)

    health = rollout_ring_health(kpi_started, "pilot")

    assert health.metrics == {"disk_free_pct": 42.0}


@pytest.mark.parametrize(
    ("disk_free_pct", "action"),
    [(42.0, Action.PROMOTE), (12.0, Action.PAUSE), (2.0, Action.ROLLBACK), (None, Action.PROMOTE)],
)
def test_the_gates_judge_the_custom_kpi_of_the_ring(kpi_started, disk_free_pct, action):
    report_disk(kpi_started, disk_free_pct)

    assert lifecycle.rollout_evaluate(rollout=kpi_started).action == action


def test_a_stored_evaluation_carries_the_custom_gate_and_the_metric(kpi_started, viewer):
    report_disk(kpi_started, 12.0)
    decision = lifecycle.rollout_evaluate(rollout=kpi_started)
    lifecycle.evaluation_store(rollout=kpi_started, decision=decision, source="autopilot")

    stored = Evaluation.objects.get(rollout=kpi_started)
    body = viewer.get(f"/api/evaluations/{stored.pk}").json()

    gate = body["evaluation"]["gates"]["kpi:disk_free_pct"]
    assert (gate["value"], gate["passed"], gate["label"], gate["critical"]) == (
        12.0,
        False,
        "Disk free",
        False,
    )
    assert body["evaluation"]["health"]["metrics"] == {"disk_free_pct": 12.0}
    assert "Disk free 12 (goal >= 20)" in body["reason"]


def test_the_series_api_carries_the_custom_kpis_and_their_means(kpi_started, viewer):
    report_disk(kpi_started, 42.0)

    body = viewer.get(f"/api/rollouts/{kpi_started.rollout_id}/series?minutes=10").json()

    assert body["kpis"] == [
        {
            "metric": "disk_free_pct",
            "label": "Disk free",
            "operator": ">=",
            "threshold": 20.0,
            "critical_threshold": 5.0,
        }
    ]
    assert body["points"][-1]["metrics"] == {"disk_free_pct": 42.0}


def test_a_plan_accepts_custom_gates_and_shows_them_in_its_effective_gates(release_manager, plan):
    response = release_manager.patch(
        "/api/plans/test-plan", {"gate_config": {"custom_gates": [DISK_GATE]}}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["effective_gate_config"]["custom_gates"] == [
        {
            **DISK_GATE,
            "threshold": 20.0,
            "critical_threshold": 5.0,
            "baseline": False,
            "baseline_ratio_max": 1.5,
        }
    ]


@pytest.mark.parametrize(
    ("custom_gates", "message"),
    [
        ([{**DISK_GATE, "operator": "=="}], "custom_gates[0].operator must be '>=' or '<='."),
        (
            [{**DISK_GATE, "metric": "crash_free"}],
            "custom_gates[0].metric: The metric name 'crash_free' is a built-in",
        ),
        ([{**DISK_GATE, "critical_threshold": 30}], "custom_gates[0].critical_threshold must not be above"),
        ("disk_free_pct >= 20", "custom_gates must be a list of gate definitions."),
    ],
)
def test_a_plan_refuses_a_bad_custom_gate_naming_the_key(release_manager, plan, custom_gates, message):
    response = release_manager.patch(
        "/api/plans/test-plan", {"gate_config": {"custom_gates": custom_gates}}, format="json"
    )

    assert response.status_code == 400
    assert message in response.json()["fields"]["gate_config"][0]
    assert RolloutPlan.objects.get(pk=plan.pk).gate_config == plan.gate_config


def test_a_rollout_freezes_the_custom_gates_of_its_plan(plan, release, fleet, manager):
    plan.gate_config = {"min_sample": 10, "min_checks": 10, "custom_gates": [DISK_GATE]}
    plan.save()

    rollout = lifecycle.rollout_create(release=release, plan=plan, actor=manager)

    assert GateConfig.from_dict(rollout.gate_config).custom_gates[0].metric == "disk_free_pct"
