"""Custom KPIs in the portal: the rollout page lists a plan's KPI gates beside the built-ins (card,
gate, chart), and the plan pages show their definitions."""

import pytest
from django.urls import reverse
from django.utils import timezone

from rollouts.gates import GateConfig
from rollouts.models import RolloutPlan
from saferoll.core import roles
from tests.factories import HealthCheckFactory

pytestmark = pytest.mark.django_db

TEMPERATURE_GATE = {
    "metric": "temperature_c",
    "label": "Board temperature °C",
    "operator": "<=",
    "threshold": 70,
    "critical_threshold": 85,
}
LOOPS_GATE = {"metric": "crash_loops", "operator": "<=", "threshold": 0.05, "baseline": True}


@pytest.fixture
def kpi_rollout(rollout_factory):
    """A rollout in pilot whose devices reported healthy, its gates carrying two custom KPIs."""
    rollout = rollout_factory("pilot")
    config = GateConfig.from_dict({**rollout.gate_config, "custom_gates": [TEMPERATURE_GATE, LOOPS_GATE]})
    rollout.gate_config = config.to_dict()
    rollout.save(update_fields=["gate_config"])
    return rollout


def report_temperature(rollout, temperature: float) -> None:
    for deployment in rollout.deployments.select_related("device"):
        HealthCheckFactory(
            device=deployment.device,
            version=rollout.release.version,
            received_at=timezone.now(),
            metrics={"temperature_c": temperature},
        )


def detail(client, rollout) -> str:
    return client.get(reverse("portal:rollout-detail", args=[rollout.rollout_id])).content.decode()


def test_the_rollout_page_lists_a_custom_kpi_beside_the_built_ins(page_client, kpi_rollout):
    report_temperature(kpi_rollout, 61.25)

    html = detail(page_client(roles.VIEWER), kpi_rollout)

    assert 'data-decision="PROMOTE"' in html
    assert 'data-metric="kpi:temperature_c" data-tone="pass"' in html
    assert "Board temperature °C" in html
    assert 'data-gate="kpi:temperature_c" data-passed="true"' in html
    assert "Current <strong>61.25</strong> · Goal ≤ 70 · Critical &gt; 85" in html
    assert '<option value="temperature_c">Board temperature °C</option>' in html


def test_a_failing_custom_kpi_pauses_and_shows_as_failing(page_client, kpi_rollout):
    report_temperature(kpi_rollout, 90.0)

    html = detail(page_client(roles.VIEWER), kpi_rollout)

    assert 'data-decision="PAUSE"' in html
    assert 'data-metric="kpi:temperature_c" data-tone="fail"' in html
    assert 'data-gate="kpi:temperature_c" data-passed="false"' in html


def test_a_custom_kpi_nobody_reported_reads_no_data_and_is_not_judged(page_client, kpi_rollout):
    html = detail(page_client(roles.VIEWER), kpi_rollout)

    card = html[html.index('data-metric="kpi:crash_loops"') :]
    assert "NO DATA" in card[: card.index("</article>")]
    gate = html[html.index('data-gate="kpi:crash_loops"') :]
    assert "Not judged" in gate[: gate.index("gate-values")]


def test_the_chart_series_offers_the_custom_kpis_with_their_means(page_client, kpi_rollout):
    report_temperature(kpi_rollout, 61.25)
    url = reverse("portal:rollout-series", args=[kpi_rollout.rollout_id])

    body = page_client(roles.VIEWER).get(url, {"minutes": 10}).json()

    assert [kpi["metric"] for kpi in body["kpis"]] == ["temperature_c", "crash_loops"]
    assert body["kpis"][0]["label"] == "Board temperature °C"
    assert body["points"][-1]["metrics"] == {"temperature_c": 61.25}


def test_the_plan_pages_show_a_custom_gate_definition(page_client, kpi_rollout):
    plan = RolloutPlan.objects.get(name="portal-test")
    plan.gate_config = {**plan.gate_config, "custom_gates": [TEMPERATURE_GATE, LOOPS_GATE]}
    plan.save()
    client = page_client(roles.RELEASE_MANAGER)

    for url in (reverse("portal:plan-detail", args=[plan.name]), reverse("portal:rollout-new")):
        html = client.get(url).content.decode()
        assert "KPI: Board temperature °C (temperature_c)" in html, url
        assert "≤ 70; critical above 85, pauses" in html, url
        assert "KPI: Crash loops" in html, url
        assert "compared with the baseline (at most 1.5× as bad)" in html, url


def test_the_device_page_lists_the_custom_kpis_of_its_recent_checks(page_client, kpi_rollout):
    device = kpi_rollout.deployments.first().device
    HealthCheckFactory(device=device, metrics={"temperature_c": 44.75, "crash_loops": 0})

    html = (
        page_client(roles.VIEWER)
        .get(reverse("portal:device-detail", args=[device.device_id]))
        .content.decode()
    )

    assert "crash_loops 0 · temperature_c 44.75" in html
