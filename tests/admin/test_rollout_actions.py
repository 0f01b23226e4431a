"""Rollout admin actions: the same permission checks, state machine and audit as the API."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from rollouts.choices import RolloutStatus
from rollouts.gates import Action, Decision
from rollouts.models import Rollout
from rollouts.services import lifecycle
from saferoll.core import roles
from saferoll.core.models import AuditEvent
from tests.factories import DeviceFactory, ReleaseFactory, RolloutFactory, RolloutPlanFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/rollouts/rollout/"


def person(role: str) -> Client:
    client = Client()
    client.user = UserFactory(username=f"{role}-admin-user", role=role)
    client.force_login(client.user)
    return client


@pytest.fixture
def manager() -> Client:
    return person(roles.RELEASE_MANAGER)


@pytest.fixture
def rollout(db) -> Rollout:
    DeviceFactory.create_batch(3, ring="pilot")
    DeviceFactory.create_batch(2, ring="ring_5")
    return RolloutFactory(release=ReleaseFactory(version="v2.1"), plan=RolloutPlanFactory())


def act(client: Client, action: str, rollout: Rollout, **extra):
    data = {"action": action, "_selected_action": [rollout.pk], "index": 0, **extra}
    return client.post(CHANGELIST, data, follow=True)


def confirm(client: Client, action: str, rollout: Rollout, reason: str):
    """The intermediate page's form: no `index`, a `confirm` flag and the reason."""
    data = {"action": action, "_selected_action": [rollout.pk], "confirm": "yes", "reason": reason}
    return client.post(CHANGELIST, data, follow=True)


def texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def rollout_events(rollout: Rollout, action: str):
    return AuditEvent.objects.filter(rollout=rollout, action=action)


@pytest.fixture
def gates_pass(monkeypatch):
    """The ring passes its gates (the health data path is tested with the gate engine)."""

    def passing(*, rollout, now=None, config=None):
        return Decision(Action.PROMOTE, "All SLO gates passed.", {"ring": rollout.current_ring, "gates": {}})

    monkeypatch.setattr(lifecycle, "rollout_evaluate", passing)


def test_it_lists_rollouts_with_their_version_and_state(manager, rollout):
    response = manager.get(CHANGELIST)

    page = response.content.decode()
    assert response.status_code == 200
    assert rollout.rollout_id in page
    assert "v2.1" in page
    for action in ("start", "promote", "pause", "resume", "rollback"):
        assert f'value="{action}"' in page


def test_it_starts_a_rollout_through_the_service(manager, rollout):
    response = act(manager, "start", rollout)

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ACTIVE
    assert rollout.current_ring == "pilot"
    event = rollout_events(rollout, "START").get()
    assert event.actor == manager.user
    assert event.to_ring == "pilot"
    assert any(text.startswith("Started: ") for text in texts(response))


def test_it_promotes_when_the_gates_pass(manager, rollout, gates_pass):
    act(manager, "start", rollout)

    act(manager, "promote", rollout)

    rollout.refresh_from_db()
    assert rollout.current_ring == "ring_5"
    event = rollout_events(rollout, "PROMOTE").get()
    assert (event.from_ring, event.to_ring, event.actor_name) == ("pilot", "ring_5", manager.user.username)


def test_it_shows_a_refused_transition_as_an_error(manager, rollout):
    response = act(manager, "promote", rollout)

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.CREATED
    errors = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"]
    assert errors == [
        f"Cannot promote {rollout.rollout_id}: it is created and not started yet; start it first."
    ]
    assert rollout_events(rollout, "PROMOTE_REFUSED").count() == 1


def test_it_shows_the_gates_reason_when_the_gates_refuse(manager, rollout):
    act(manager, "start", rollout)

    response = act(manager, "promote", rollout)

    rollout.refresh_from_db()
    assert rollout.current_ring == "pilot"
    errors = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"]
    assert len(errors) == 1
    assert errors[0].startswith(f"{rollout.rollout_id}: Cannot promote: WAIT.")


def test_it_asks_for_a_reason_before_pausing(manager, rollout):
    act(manager, "start", rollout)

    page = act(manager, "pause", rollout)

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ACTIVE
    assert "Why pause these rollouts?" in page.content.decode()
    assert rollout.rollout_id in page.content.decode()

    confirm(manager, "pause", rollout, reason="Ward 4 reports flicker")

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    assert rollout_events(rollout, "PAUSE").get().reason == "Ward 4 reports flicker"


def test_it_resumes_a_paused_rollout(manager, rollout):
    act(manager, "start", rollout)
    confirm(manager, "pause", rollout, reason="")

    act(manager, "resume", rollout)

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ACTIVE
    assert rollout_events(rollout, "RESUME").count() == 1


def test_it_requires_a_reason_to_roll_back(manager, rollout):
    act(manager, "start", rollout)

    without = confirm(manager, "rollback", rollout, reason="")
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ACTIVE
    assert "This field is required." in without.content.decode()

    confirm(manager, "rollback", rollout, reason="Crash loop on tv-55")
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK
    assert rollout_events(rollout, "ROLLBACK").get().reason == "Crash loop on tv-55"


def test_it_does_not_let_a_viewer_use_the_actions(rollout):
    viewer = person(roles.VIEWER)

    page = viewer.get(CHANGELIST).content.decode()
    act(viewer, "start", rollout)
    confirm(viewer, "rollback", rollout, reason="because")

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.CREATED
    assert 'value="start"' not in page
    assert not AuditEvent.objects.filter(rollout=rollout).exists()


def test_it_lets_an_operator_pause_but_not_start(rollout, manager):
    operator = person(roles.OPERATOR)

    page = operator.get(CHANGELIST).content.decode()
    act(operator, "start", rollout)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.CREATED
    assert 'value="pause"' in page
    assert 'value="start"' not in page

    act(manager, "start", rollout)
    confirm(operator, "pause", rollout, reason="On-call check")
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED


def test_it_creates_a_rollout_in_the_admin_through_rollout_create(manager):
    release = ReleaseFactory(version="v2.2")
    plan = RolloutPlanFactory()

    response = manager.post(
        "/admin/rollouts/rollout/add/", {"release": release.pk, "plan": plan.pk, "_save": "Save"}
    )

    assert response.status_code == 302
    rollout = Rollout.objects.get(release=release)
    assert rollout.created_by == manager.user
    assert rollout.stages == plan.stages
    assert rollout_events(rollout, "CREATED").count() == 1


def test_it_does_not_let_a_viewer_add_or_change_rollouts(rollout):
    viewer = person(roles.VIEWER)

    assert viewer.get("/admin/rollouts/rollout/add/").status_code == 403
    assert viewer.post(f"/admin/rollouts/rollout/{rollout.pk}/change/", {}).status_code == 403


def test_a_release_manager_promotes_against_the_gates_with_a_reason(manager, rollout):
    act(manager, "start", rollout)

    asked = act(manager, "promote_anyway", rollout)
    without = confirm(manager, "promote_anyway", rollout, reason="")
    rollout.refresh_from_db()
    assert rollout.current_ring == "pilot"
    done = confirm(manager, "promote_anyway", rollout, reason="Pilot devices are in the lab; skip.")

    assert "Why promote these rollouts against the gates?" in asked.content.decode()
    assert "This field is required." in without.content.decode()
    rollout.refresh_from_db()
    assert rollout.current_ring == "ring_5"
    override = rollout_events(rollout, "OVERRIDE").get()
    assert (override.actor_name, override.reason) == (
        "release_manager-admin-user",
        "Pilot devices are in the lab; skip.",
    )
    assert override.evaluation["action"] == "WAIT"
    assert rollout_events(rollout, "PROMOTE").get().changes["override"] is True
    assert any(text.startswith("Promoted:") for text in texts(done))


def test_an_operator_is_not_offered_the_override_actions(rollout):
    operator = person(roles.OPERATOR)
    page = operator.get(CHANGELIST).content.decode()

    response = confirm(operator, "promote_anyway", rollout, reason="Hurry")

    assert "promote_anyway" not in page
    assert "resume_anyway" not in page
    assert "No action selected." in texts(response) or response.status_code == 200
    assert not rollout_events(rollout, "OVERRIDE").exists()


def test_it_rolls_back_a_completed_rollout_with_a_reason(manager, rollout):
    Rollout.objects.filter(pk=rollout.pk).update(
        status=RolloutStatus.COMPLETED, current_ring="ring_100", finished_at=rollout.created_at
    )

    response = confirm(manager, "rollback", rollout, reason="Freezes reported after completion.")

    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK
    assert any("Rolled back" in text for text in texts(response))
    event = rollout_events(rollout, "ROLLBACK").get()
    assert (event.reason, event.changes["before"]) == (
        "Freezes reported after completion.",
        {"state": "completed"},
    )
