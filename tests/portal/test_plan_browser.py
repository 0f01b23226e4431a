"""The new-rollout form in a real browser: choosing a plan shows that plan's stages, bakes and
gates before anything is created."""

import pytest

from rollouts.services import plans
from saferoll.core import roles
from tests.factories import DeviceFactory, ReleaseFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_choosing_a_plan_shows_its_stages_before_the_rollout_is_created(browser_page):
    from playwright.sync_api import expect

    ReleaseFactory(version="v2.1")
    DeviceFactory(region="eu")
    DeviceFactory(region="us")
    plans.ensure_presets()
    regional = plans.plan_create(
        actor=None,
        name="by-region",
        stages=[
            {"ring": "eu-pilot", "rings": ["pilot"], "region": "eu", "bake_minutes": 30},
            {"ring": "us-pilot", "rings": ["pilot"], "region": "us", "bake_minutes": 30},
        ],
        maintenance_windows=[
            {"region": "eu", "time_zone": "Europe/Berlin", "start": "02:00", "end": "05:00"}
        ],
    )
    page = browser_page(roles.RELEASE_MANAGER)
    page.goto("/rollouts/new")
    chosen = page.locator("[data-plan-preview]:visible")
    # Nothing chosen: the default plan (the demo preset) is shown.
    expect(chosen).to_have_count(1)
    expect(chosen.locator("[data-stage]").first).to_have_attribute("data-stage", "pilot")

    page.locator("#id_plan").select_option(str(regional.pk))

    expect(chosen).to_have_attribute("data-plan-preview", str(regional.pk))
    expect(chosen.locator("[data-stage]")).to_have_count(2)
    expect(chosen.locator("[data-stage='us-pilot']")).to_contain_text("30 min")
    expect(chosen.locator("[data-plan-windows]")).to_contain_text("Europe/Berlin")
    # Nothing was created by looking.
    assert not regional.rollouts.exists()
