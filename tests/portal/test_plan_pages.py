"""The portal's plan pages and the new-rollout form's plan summary: stages in order with their
region, bake and install share, the effective gate thresholds, waves, retries and maintenance
windows, shown to every role before anything starts."""

import datetime as dt
import re

import pytest
from django.test import Client
from django.urls import reverse

from rollouts.models import RolloutPlan
from rollouts.services import plans
from saferoll.core import roles
from tests.factories import DeviceFactory, ReleaseFactory

pytestmark = pytest.mark.django_db

READERS = (roles.VIEWER, roles.OPERATOR, roles.RELEASE_MANAGER, roles.ADMIN)


@pytest.fixture
def regional_plan(db) -> RolloutPlan:
    DeviceFactory(region="eu", site="Charité")
    DeviceFactory(region="us", site="Mercy")
    return plans.plan_create(
        actor=None,
        name="by-region",
        description="Europe first, then America.",
        stages=[
            {
                "ring": "eu-pilot",
                "rings": ["pilot"],
                "region": "eu",
                "bake_minutes": 90,
                "auto_advance": True,
            },
            {"ring": "us-pilot", "rings": ["pilot"], "region": "us", "bake_minutes": 1440},
            {"ring": "rest", "rings": ["ring_5", "ring_100"]},
        ],
        gate_config={"crash_free_min": 0.995, "availability_min": None},
        maintenance_windows=[
            {
                "region": "eu",
                "time_zone": "Europe/Berlin",
                "start": "22:00",
                "end": "04:00",
                "weekdays": ["sat"],
            },
            {"site": "Mercy", "time_zone": "America/New_York", "start": "01:00", "end": "03:00"},
        ],
        activation_window_start=dt.time(2, 0),
        activation_window_end=dt.time(4, 0),
    )


def text_of(response) -> str:
    """The page's text without tags, spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def stage_rows(html: str) -> list[str]:
    return re.findall(r'data-stage="([^"]+)"', html)


@pytest.mark.parametrize("role", READERS)
def test_every_role_reads_the_plans_and_a_plan(page_client, regional_plan, role):
    client = page_client(role)

    listing = client.get(reverse("portal:plan-list"))
    detail = client.get(reverse("portal:plan-detail", args=["by-region"]))

    assert listing.status_code == 200
    assert 'data-plan="by-region"' in listing.content.decode()
    assert detail.status_code == 200
    # Offered a new rollout with the plan only when the role may create one.
    may_create = role in (roles.RELEASE_MANAGER, roles.ADMIN)
    assert ("New rollout with this plan" in detail.content.decode()) is may_create


def test_the_plans_page_is_for_signed_in_people_with_a_role(page_client, regional_plan):
    anonymous = Client().get(reverse("portal:plan-detail", args=["by-region"]))
    no_role = page_client(None).get(reverse("portal:plan-list"))

    assert anonymous.status_code == 302
    assert no_role.status_code == 403


def test_an_unknown_plan_is_not_found(page_client, db):
    assert page_client(roles.VIEWER).get(reverse("portal:plan-detail", args=["nope"])).status_code == 404


def test_a_plan_page_lists_its_stages_gates_and_windows(page_client, regional_plan):
    stages = regional_plan.stages
    stages[2]["min_installed_share"] = 0.75
    RolloutPlan.objects.filter(pk=regional_plan.pk).update(stages=stages)
    response = page_client(roles.VIEWER).get(reverse("portal:plan-detail", args=["by-region"]))
    html, text = response.content.decode(), text_of(response)

    assert stage_rows(html) == ["eu-pilot", "us-pilot", "rest"]
    assert "1 eu-pilot eu Ring pilot 1 h 30 min Automatic 90%" in text
    assert "2 us-pilot us Ring pilot 1 d A person promotes 90%" in text
    assert "3 rest All regions Rings ring_5, ring_100 None A person promotes 75%" in text
    # The effective thresholds: the plan's own in bold, the defaults as they are.
    assert "Crash-free rate, at least</dt><dd><strong>99.5%</strong>" in html
    assert "Crash-free rate, critical below</dt><dd>95.0%" in html
    assert "Availability, at least</dt><dd><strong>Off</strong>" in html
    assert "Region eu 22:00–04:00 (overnight) Europe/Berlin Sat" in text
    assert "Site Mercy 01:00–03:00 America/New_York Every day" in text
    assert "Devices no window covers activate: 02:00–04:00 UTC." in text
    assert "A stage's devices are told at once" in text
    assert "A failed deployment is not retried" in text


def test_a_plan_page_shows_waves_and_retries_readably(page_client, regional_plan):
    # Stored as given: what they mean is up to the delivery code, the page only shows them.
    RolloutPlan.objects.filter(pk=regional_plan.pk).update(
        waves={"per_minute": 50, "growth": 2.0}, retries={"count": 2, "backoff_seconds": 60}
    )

    text = text_of(page_client(roles.VIEWER).get(reverse("portal:plan-detail", args=["by-region"])))

    # PostgreSQL's JSON keeps an object's keys in its own order.
    assert "Waves Growth: 2 · Per minute: 50" in text
    assert "Retries Count: 2 · Backoff seconds: 60" in text


def test_a_plan_page_shows_its_health_score_weights(page_client, regional_plan):
    client = page_client(roles.VIEWER)
    page = reverse("portal:plan-detail", args=["by-region"])
    assert "Health score weights</dt><dd>Defaults" in client.get(page).content.decode()

    RolloutPlan.objects.filter(pk=regional_plan.pk).update(
        gate_config={
            "custom_gates": [{"metric": "disk_free", "operator": ">=", "threshold": 10}],
            "score_weights": {"crash_free_rate": 5, "kpi:disk_free": 0.5},
        }
    )

    html = client.get(page).content.decode()
    assert (
        "Health score weights</dt><dd><strong>Crash-free rate 5, Disk free 0.5; "
        "the other gates their default</strong>"
    ) in html


def test_a_plan_with_broken_gates_is_shown_with_the_problem(page_client, regional_plan):
    RolloutPlan.objects.filter(pk=regional_plan.pk).update(gate_config={"min_sample": 0})

    response = page_client(roles.VIEWER).get(reverse("portal:plan-detail", args=["by-region"]))

    assert response.status_code == 200
    assert "Its gate settings do not hold together: min_sample must be at least 1." in text_of(response)


def test_the_nav_leads_to_the_plans(page_client, regional_plan):
    html = page_client(roles.VIEWER).get(reverse("portal:plan-list")).content.decode()

    assert f'<a href="{reverse("portal:plan-list")}" aria-current="page">Plans</a>' in html


def test_the_new_rollout_form_shows_the_chosen_plan_before_anything_starts(page_client, regional_plan):
    ReleaseFactory(version="v2.1")
    client = page_client(roles.RELEASE_MANAGER)

    first = client.get(reverse("portal:rollout-new"))
    chosen = client.get(reverse("portal:rollout-new") + f"?plan={regional_plan.pk}")

    # Without a choice the default plan's summary shows; the plan was not the default.
    assert not regional_plan.is_default
    assert visible_previews(first) == []
    html = chosen.content.decode()
    assert visible_previews(chosen) == [str(regional_plan.pk)]
    assert f'<option value="{regional_plan.pk}" selected>' in html
    assert stage_rows(html) == ["eu-pilot", "us-pilot", "rest"]
    assert "Region eu 22:00–04:00 (overnight)" in text_of(chosen)


def test_the_new_rollout_form_shows_the_default_plan_when_none_is_chosen(page_client, regional_plan):
    ReleaseFactory(version="v2.1")
    plans.plan_update(plan=regional_plan, actor=None, is_default=True)

    response = page_client(roles.RELEASE_MANAGER).get(reverse("portal:rollout-new"))

    assert visible_previews(response) == [str(regional_plan.pk)]


def visible_previews(response) -> list[str]:
    return re.findall(r'data-plan-preview="(\d+)"(?:(?! hidden)[^>])*>', response.content.decode())
