"""The Django admin: every model is there, its pages render, secrets stay hidden, the audit log is sealed."""

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from devices.models import CohortMembership
from saferoll.core.audit import audit_record
from saferoll.core.models import Alert, AuditEvent, FleetState
from tests.factories import (
    CohortFactory,
    DeviceDeploymentFactory,
    DeviceFactory,
    EvaluationFactory,
    HardwareVariantFactory,
    HealthCheckFactory,
    IncidentFactory,
    ReleaseFactory,
    RolloutFactory,
    RolloutPlanFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

SAFEROLL_APPS = {"saferoll", "devices", "rollouts", "telemetry"}


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def boss(db):
    """An administrator: staff in the Admin group (not a Django superuser)."""
    return UserFactory(username="boss", role="admin")


@pytest.fixture
def world(boss):
    """One row of every model the admin shows."""
    variant = HardwareVariantFactory(name="tv-55-gen3")
    device = DeviceFactory(device_id="tv-0001", variant=variant)
    cohort = CohortFactory(name="canary")
    CohortMembership.objects.create(cohort=cohort, device=device)
    release = ReleaseFactory(version="v2.1")
    plan = RolloutPlanFactory(name="test-plan")
    rollout = RolloutFactory(release=release, plan=plan)
    deployment = DeviceDeploymentFactory(rollout=rollout, device=device)
    evaluation = EvaluationFactory(rollout=rollout)
    incident = IncidentFactory(release=release)
    check = HealthCheckFactory(device=device)
    event = audit_record(actor=boss, action="CREATE", obj=release, changes={"before": {}, "after": {"a": 1}})
    alert = Alert.objects.create(kind="auto_rollback", title="Rolled back", rollout=rollout)
    return [
        variant,
        device,
        cohort,
        release,
        plan,
        rollout,
        deployment,
        evaluation,
        incident,
        check,
        event,
        FleetState.load(),
        alert,
        boss,
    ]


def url(obj, view: str) -> str:
    opts = obj._meta
    args = [] if view in ("changelist", "add") else [obj.pk]
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def test_it_registers_every_saferoll_model():
    from django.apps import apps

    ours = {model for model in apps.get_models() if model._meta.app_label in SAFEROLL_APPS}
    assert ours - {CohortMembership} <= set(admin.site._registry)


def test_it_renders_every_changelist_for_an_admin(boss, world):
    client = login(boss)

    for model in admin.site._registry:
        response = client.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
        assert response.status_code == 200, model


def test_it_renders_every_change_page_for_an_admin(boss, world):
    client = login(boss)

    for obj in world:
        response = client.get(url(obj, "change"))
        assert response.status_code == 200, type(obj)


def test_it_shows_an_evaluations_health_score_beside_its_gates(boss, db):
    scored = EvaluationFactory(detail={"gates": {}, "score": {"value": 87, "weights": {}, "parts": {}}})
    unscored = EvaluationFactory(rollout=scored.rollout)
    client = login(boss)

    assert (
        "87 / 100 — weighed from the gates; it explains, the gates decide"
        in client.get(url(scored, "change")).content.decode()
    )
    assert "Not scored" in client.get(url(unscored, "change")).content.decode()


@pytest.mark.parametrize(
    "app_model", ["devices.device", "devices.cohort", "rollouts.release", "rollouts.rollout"]
)
def test_it_renders_the_add_pages(boss, app_model):
    app_label, model_name = app_model.split(".")

    response = login(boss).get(reverse(f"admin:{app_label}_{model_name}_add"))

    assert response.status_code == 200


def test_it_searches_and_filters_the_device_list(boss, world):
    client = login(boss)
    changelist = reverse("admin:devices_device_changelist")

    assert client.get(changelist, {"q": "tv-0001"}).status_code == 200
    assert client.get(changelist, {"ring": "pilot", "status": "online"}).status_code == 200
    health = reverse("admin:telemetry_healthcheck_changelist")
    assert client.get(health, {"ring": "pilot", "version": "v2.0", "boot_ok__exact": "1"}).status_code == 200


def test_it_never_shows_a_device_token_hash(boss, world):
    device = world[1]

    change = login(boss).get(url(device, "change")).content.decode()
    listing = login(boss).get(url(device, "changelist")).content.decode()

    assert device.token_hash not in change
    assert device.token_hash not in listing
    assert "token_hash" not in change


def test_it_makes_audit_events_read_only_even_for_a_superuser(world):
    root = UserFactory(username="root", is_superuser=True)
    event = AuditEvent.objects.get(action="CREATE")
    client = login(root)

    page = client.get(url(event, "change"))
    changed = client.post(url(event, "change"), {"reason": "rewritten", "action": "FORGED"})
    deleted = client.post(url(event, "delete"), {"post": "yes"})
    added = client.get(url(event, "add"))
    bulk = client.post(
        url(event, "changelist"), {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    )

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert changed.status_code == 403
    assert deleted.status_code == 403
    assert added.status_code == 403
    assert bulk.status_code in (200, 302)
    event.refresh_from_db()
    assert (event.action, event.reason) == ("CREATE", "")
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_it_keeps_people_out_of_the_admin_without_staff_status(world):
    outsider = UserFactory(username="outsider", is_staff=False)

    response = login(outsider).get(reverse("admin:index"))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
