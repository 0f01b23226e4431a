"""The rollout page's chart in a real browser: a custom KPI of the plan's gates picked instead of
the built-in figures, drawn with its goal."""

import pytest
from django.utils import timezone

from rollouts.gates import GateConfig
from saferoll.core import roles
from tests.factories import HealthCheckFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEMPERATURE_GATE = {
    "metric": "temperature_c",
    "label": "Board temperature",
    "operator": "<=",
    "threshold": 70,
}


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def test_the_chart_shows_a_custom_kpi_picked_with_its_goal(browser_page, rollout_factory):
    rollout = rollout_factory("pilot")
    rollout.gate_config = GateConfig.from_dict(
        {**rollout.gate_config, "custom_gates": [TEMPERATURE_GATE]}
    ).to_dict()
    rollout.save(update_fields=["gate_config"])
    for deployment in rollout.deployments.select_related("device"):
        HealthCheckFactory(
            device=deployment.device,
            version=rollout.release.version,
            received_at=timezone.now(),
            metrics={"temperature_c": 61.25},
        )
    page = browser_page(roles.VIEWER)
    page.goto(f"/rollouts/{rollout.rollout_id}")
    chart = page.locator("#health-chart")
    expect()(chart.locator("canvas")).to_have_count(1)
    expect()(page.locator("[data-chart-summary]")).to_contain_text("crash-free")

    page.locator("[data-chart-kpi]").select_option("temperature_c")

    expect()(page.locator("[data-chart-summary]")).to_contain_text("Board temperature 61.25 (goal ≤ 70)")
    expect()(chart).to_have_attribute(
        "aria-label", "Line chart of Board temperature per minute, with its goal as a dashed line"
    )
    expect()(chart.locator(".u-legend")).to_contain_text("Board temperature goal")
    expect()(chart.locator("canvas")).to_have_count(1)
