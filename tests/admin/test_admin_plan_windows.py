"""Maintenance windows in the admin's plan form: checked by the plan service's own rules."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from rollouts.models import RolloutPlan
from saferoll.core import roles
from saferoll.core.models import AuditEvent
from tests.factories import DEMO_STAGES, DeviceFactory, UserFactory

pytestmark = pytest.mark.django_db

WINDOW = {"region": "eu-west", "time_zone": "Europe/Paris", "start": "02:00", "end": "05:00"}


@pytest.fixture
def manager(db) -> Client:
    client = Client()
    client.user = UserFactory(username="rm", role=roles.RELEASE_MANAGER)
    client.force_login(client.user)
    DeviceFactory(region="eu-west")
    return client


def add_plan(client: Client, windows: list) -> object:
    return client.post(
        reverse("admin:rollouts_rolloutplan_add"),
        {
            "name": "nights",
            "description": "",
            "stages": json.dumps(DEMO_STAGES),
            "gate_config": "{}",
            "maintenance_windows": json.dumps(windows),
            "_save": "Save",
        },
    )


def test_a_plan_with_windows_is_created_and_audited(manager):
    response = add_plan(manager, [WINDOW])

    assert response.status_code == 302
    assert RolloutPlan.objects.get(name="nights").maintenance_windows == [WINDOW]
    event = AuditEvent.objects.get(object_type="rolloutplan", action="CREATE")
    assert event.actor == manager.user
    assert event.changes["after"]["maintenance_windows"] == [WINDOW]


def test_a_window_in_no_time_zone_is_shown_on_the_form(manager):
    response = add_plan(manager, [{**WINDOW, "time_zone": "Mars/Base"}])

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["maintenance_windows"] == [
        "Maintenance window 1: 'Mars/Base' is not a time zone; use an IANA name such as 'Europe/Berlin'."
    ]
    assert not RolloutPlan.objects.filter(name="nights").exists()
