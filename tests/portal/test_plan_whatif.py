"""The plan page's "What would this plan do?": every reader replays a plan and reads the table;
the form's bounds keep it to a web request; the admin's plan page links to it."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from rollouts.services import plans
from saferoll.core import roles
from tests.factories import DEMO_STAGES, UserFactory

pytestmark = pytest.mark.django_db

READERS = (roles.VIEWER, roles.OPERATOR, roles.RELEASE_MANAGER, roles.ADMIN)
SMALL = {"runs": 3, "fleet": 2000, "outside_events": 0.3, "seed": 1}


@pytest.fixture
def plan(db):
    return plans.plan_create(actor=None, name="careful", stages=[dict(stage) for stage in DEMO_STAGES])


def url(name: str = "careful") -> str:
    return reverse("portal:plan-whatif", args=[name])


@pytest.mark.parametrize("role", READERS)
def test_every_reader_replays_a_plan_and_reads_the_table(page_client, plan, role):
    response = page_client(role).get(url(), SMALL)

    html = response.content.decode()
    assert response.status_code == 200
    assert "data-whatif-table" in html
    assert 'data-scenario="overall"' in html
    assert re.search(r"stopped before ring_25", html)


def test_the_form_alone_runs_nothing(page_client, plan):
    response = page_client(roles.VIEWER).get(url())

    assert response.status_code == 200
    assert "data-whatif-form" in response.content.decode()
    assert "data-whatif-table" not in response.content.decode()


def test_a_link_that_names_some_fields_takes_the_defaults_for_the_others(page_client, plan):
    response = page_client(roles.VIEWER).get(url(), {"runs": 2, "fleet": 1000})

    html = response.content.decode()
    assert "data-whatif-table" in html
    assert "This field is required" not in html


@pytest.mark.parametrize(
    ("field", "value"), [("runs", 21), ("runs", 0), ("fleet", 10_000_000), ("outside_events", 1.5)]
)
def test_values_beyond_the_bounds_are_refused_on_the_form(page_client, plan, field, value):
    response = page_client(roles.VIEWER).get(url(), {**SMALL, field: value})

    html = response.content.decode()
    assert response.status_code == 200
    assert "error-text" in html
    assert "data-whatif-table" not in html


def test_it_needs_a_signed_in_reader(plan, page_client):
    assert Client().get(url(), SMALL).status_code == 302
    assert page_client(None).get(url(), SMALL).status_code == 403


def test_an_unknown_plan_is_not_found(page_client):
    assert page_client(roles.VIEWER).get(url("nope"), SMALL).status_code == 404


def test_the_plan_page_and_the_admin_link_to_it(page_client, plan):
    detail = page_client(roles.VIEWER).get(reverse("portal:plan-detail", args=["careful"]))
    admin = Client()
    admin.force_login(UserFactory(username="boss", role="admin"))
    change = admin.get(reverse("admin:rollouts_rolloutplan_change", args=[plan.pk]))

    assert url() in detail.content.decode()
    assert change.status_code == 200
    assert url() in change.content.decode()
