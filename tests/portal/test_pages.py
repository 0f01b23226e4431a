"""The portal's pages for every role: who reads what, which buttons each role is offered, and the
server refusing what a role may not do even when the request is forged."""

import datetime as dt
import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from devices.models import Device
from rollouts.choices import IncidentStatus, RolloutStatus
from rollouts.models import DeviceDeployment, Incident, Rollout
from rollouts.services import lifecycle
from saferoll.core import roles
from saferoll.core.alerts import alert_raise
from saferoll.core.models import Alert, AlertLevel, AuditEvent, FleetState
from telemetry.models import HealthCheck
from telemetry.rollups import rollups_rebuild
from tests.factories import DeviceFactory, HealthCheckFactory, IncidentFactory, ReleaseFactory
from tests.portal.conftest import fast_plan, report_healthy

pytestmark = pytest.mark.django_db

ROLES = (roles.VIEWER, roles.OPERATOR, roles.RELEASE_MANAGER, roles.ADMIN)
BUTTON = re.compile(r'data-action="(\w+)"')


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def offered(response) -> set[str]:
    return set(BUTTON.findall(response.content.decode()))


def action_url(rollout: Rollout, action: str) -> str:
    return reverse("portal:rollout-action", args=[rollout.rollout_id, action])


# --- reading ----------------------------------------------------------------------------------


@pytest.fixture
def every_page(rollout_factory):
    rollout = rollout_factory("pilot")
    device = rollout.deployments.select_related("device").first().device
    return [
        reverse("portal:dashboard"),
        reverse("portal:dashboard-fragment"),
        reverse("portal:chrome-fragment"),
        reverse("portal:rollout-detail", args=[rollout.rollout_id]),
        reverse("portal:rollout-fragment", args=[rollout.rollout_id]),
        reverse("portal:rollout-series", args=[rollout.rollout_id]),
        reverse("portal:device-list"),
        reverse("portal:device-detail", args=[device.device_id]),
        reverse("portal:release-list"),
        reverse("portal:cohort-list"),
        reverse("portal:incident-list"),
        reverse("portal:alert-list"),
        reverse("portal:audit-log"),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_it_shows_every_page_to_every_role(page_client, every_page, role):
    client = page_client(role)
    for url in every_page:
        response = client.get(url)
        assert response.status_code == 200, url


def test_it_sends_anonymous_people_to_the_login_page(every_page):
    client = Client()
    for url in every_page:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("portal:login") + "?next="), url


def test_it_refuses_a_signed_in_account_without_a_role(page_client, every_page):
    client = page_client(None)
    for url in every_page:
        assert client.get(url).status_code == 403, url


def test_it_shows_the_user_and_role_in_the_navigation(page_client):
    response = page_client(roles.OPERATOR).get(reverse("portal:dashboard"))
    html = response.content.decode()
    assert "operator-user" in html
    assert "data-role>Operator<" in html
    assert "data-live-indicator" in html


def test_it_signs_in_with_the_login_form_and_out_again(make_user):
    make_user(roles.VIEWER, username="vera")
    client = Client()
    page = client.get(reverse("portal:login"))
    assert page.status_code == 200
    response = client.post(reverse("portal:login"), {"username": "vera", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:dashboard")
    assert client.get(reverse("portal:dashboard")).status_code == 200
    client.post(reverse("portal:logout"))
    assert client.get(reverse("portal:dashboard")).status_code == 302


def test_it_says_why_a_sign_in_failed(make_user):
    make_user(roles.VIEWER, username="vera")
    response = Client().post(reverse("portal:login"), {"username": "vera", "password": "wrong"})
    assert response.status_code == 200
    assert "enter a correct username and password" in response.content.decode().lower()


def test_the_dashboard_groups_rollouts_by_active_completed_and_rolled_back(page_client, rollout_factory):
    active = rollout_factory("pilot", version="v9.1")
    rolled_back = rollout_factory("created", version="v9.2")
    rolled_back.refresh_from_db()
    lifecycle.rollout_rollback(rollout=rolled_back, actor=None, reason="Crash loop on boot")
    html = page_client(roles.VIEWER).get(reverse("portal:dashboard")).content.decode()
    active_section = html.split('id="active-title"')[1].split('id="completed-title"')[0]
    failed_section = html.split('id="failed-title"')[1]
    assert active.rollout_id in active_section
    assert rolled_back.rollout_id in failed_section
    assert "Crash loop on boot" in failed_section
    assert "Fleet summary" in html


def test_the_dashboard_turns_the_autopilot_heartbeat_red_when_stale(page_client):
    FleetState.load()
    FleetState.objects.filter(pk=1).update(autopilot_last_run=timezone.now() - dt.timedelta(hours=1))
    html = page_client(roles.VIEWER).get(reverse("portal:dashboard")).content.decode()
    assert 'data-stale="true"' in html
    FleetState.objects.filter(pk=1).update(autopilot_last_run=timezone.now())
    html = page_client(roles.VIEWER).get(reverse("portal:dashboard")).content.decode()
    assert 'data-stale="false"' in html


# --- the rollout detail -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (roles.VIEWER, set()),
        (roles.OPERATOR, {"pause"}),
        (roles.RELEASE_MANAGER, {"promote", "pause", "rollback"}),
        (roles.ADMIN, {"promote", "pause", "rollback"}),
    ],
)
def test_it_offers_each_role_only_the_buttons_it_may_use(page_client, rollout_factory, role, expected):
    rollout = rollout_factory("pilot")
    response = page_client(role).get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
    assert offered(response) == expected


def test_it_shows_the_gates_decision_metric_cards_timeline_and_blast_radius(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    html = (
        page_client(roles.VIEWER)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )
    assert 'data-decision="PROMOTE"' in html
    for metric in ("crash_free_rate", "boot_success_rate", "median_latency_ms", "reporting_rate"):
        assert f'data-metric="{metric}"' in html
    assert 'data-metric="crash_free_rate" data-tone="pass"' in html
    assert 'data-event="START"' in html and 'data-event="CREATED"' in html
    assert html.index('data-event="START"') < html.index('data-event="CREATED"'), "newest first"
    assert 'data-blast="exposed"' in html and 'data-blast="spared"' in html
    assert 'data-ring="pilot" data-ring-state="active"' in html
    assert 'data-ring="ring_5" data-ring-state="upcoming"' in html


def test_it_shows_a_failing_gate_apart_from_its_goal_and_a_critical_reading_as_critical(
    page_client, rollout_factory
):
    rollout = rollout_factory("pilot", healthy=False)
    deployments = rollout.deployments.select_related("device")
    deployments.update(state="activated", activated_at=timezone.now() - dt.timedelta(minutes=2))
    for deployment in deployments:
        for check in range(10):
            HealthCheckFactory(
                device=deployment.device,
                version=rollout.release.version,
                crash_free=0.9896,
                boot_ok=not (check == 0 and deployment == deployments[0]),
            )

    html = (
        page_client(roles.VIEWER)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )

    # 29 of 30 boots, at or above the plan's minimum sample: 96.7% is judged as it stands.
    assert 'data-decision="ROLLBACK"' in html
    assert "Current <strong>98.96%</strong> · Goal ≥ 99.0%" in html
    assert "Current <strong>96.7%</strong>" in html
    assert 'data-gate="boot_success_rate" data-passed="false"' in html


def test_it_shows_the_health_score_beside_the_gates_as_an_explanation_not_a_verdict(
    page_client, rollout_factory
):
    rollout = rollout_factory("pilot", healthy=False)
    report_healthy(rollout, crash_free=0.97)
    manager = page_client(roles.RELEASE_MANAGER)
    manager.post(action_url(rollout, "promote"))

    html = manager.get(reverse("portal:rollout-detail", args=[rollout.rollout_id])).content.decode()

    assert 'data-decision="PAUSE"' in html
    # Crash-free halfway to its critical line counts a quarter of its weight of 3; boot, latency,
    # deployment failures and Sev1 (3 + 2 + 1 + 1) pass: (0.75 + 7) / 10, rounded half up.
    panel = html[html.index('id="r-gates"') :]
    assert panel.index('data-score="78"') < panel.index('data-gate="crash_free_rate"')
    assert "<strong>78</strong> / 100" in panel
    assert "it never decides: the gates alone promote, pause or roll back" in panel
    assert (
        '<tr data-score-part="crash_free_rate"><td>Crash-free rate</td><td class="num">3</td><td class="num">25%</td></tr>'
        in panel
    )
    # The refused promote's evaluation in the timeline carries the score it had.
    timeline = html[html.index('data-event="PROMOTE_REFUSED"') :]
    assert "Health score <strong>78</strong> / 100" in timeline


def test_it_says_a_ring_with_too_little_data_is_not_scored(page_client, rollout_factory):
    rollout = rollout_factory("pilot", healthy=False)

    html = (
        page_client(roles.VIEWER)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )

    assert 'data-decision="WAIT"' in html
    assert 'data-score=""' in html
    assert "Too little data from devices to score" in html


def test_it_disables_promote_and_says_why_when_the_gates_do_not_allow_it(page_client, rollout_factory):
    rollout = rollout_factory("pilot", healthy=False)
    html = (
        page_client(roles.RELEASE_MANAGER)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )
    button = re.search(r'<button[^>]*data-action="promote"[^>]*>', html).group(0)
    assert "disabled" in button
    assert "Cannot promote: WAIT — Installing: 0 of 3 devices run" in html


def test_it_tells_a_paused_rollout_must_be_resumed_before_promoting(page_client, rollout_factory):
    rollout = rollout_factory("paused")
    html = (
        page_client(roles.RELEASE_MANAGER)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )
    assert {"resume", "promote", "rollback"} == set(BUTTON.findall(html))
    assert "resume it first" in html


def test_it_offers_no_action_on_a_finished_rollout(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    lifecycle.rollout_rollback(rollout=rollout, actor=None, reason="bad")
    response = page_client(roles.ADMIN).get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
    assert offered(response) == set()
    html = response.content.decode()
    assert 'data-ring="pilot" data-ring-state="failed"' in html
    assert 'data-event="AUTO_ROLLBACK"' in html


def test_the_fragment_holds_every_live_part(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    html = (
        page_client(roles.VIEWER)
        .get(reverse("portal:rollout-fragment", args=[rollout.rollout_id]))
        .content.decode()
    )
    for part in ("r-head", "r-rings", "r-actions", "r-metrics", "r-gates", "r-timeline", "r-blast"):
        assert f'id="{part}" data-live-part' in html
    assert "<html" not in html


def test_the_series_gives_one_point_per_minute_with_the_goals(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    url = reverse("portal:rollout-series", args=[rollout.rollout_id])
    body = page_client(roles.VIEWER).get(url, {"minutes": 10}).json()
    assert body["minutes"] == 10
    assert len(body["points"]) == 10
    assert body["thresholds"] == {
        "crash_free_rate": 0.99,
        "boot_success_rate": 0.995,
        "median_latency_ms": 500,
    }
    last = body["points"][-1]
    assert last["total_devices"] == 3
    assert last["crash_free_rate"] == pytest.approx(0.998)
    assert isinstance(last["t"], int)
    # Only the offered ranges; anything else falls back to the default.
    assert page_client(roles.VIEWER).get(url, {"minutes": 999}).json()["minutes"] == 30


def test_it_answers_404_for_an_unknown_rollout(page_client):
    assert (
        page_client(roles.VIEWER).get(reverse("portal:rollout-detail", args=["rollout_nope"])).status_code
        == 404
    )


# --- acting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["start", "promote", "pause", "resume", "rollback"])
def test_it_refuses_a_forged_post_by_a_viewer(page_client, rollout_factory, action):
    rollout = rollout_factory("pilot")
    response = page_client(roles.VIEWER).post(action_url(rollout, action), {"reason": "forged"})
    assert response.status_code == 403
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ACTIVE
    assert not AuditEvent.objects.filter(actor_name="viewer-user").exists()


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_it_refuses_an_operator_more_than_pausing(page_client, rollout_factory, action):
    rollout = rollout_factory("pilot")
    assert page_client(roles.OPERATOR).post(action_url(rollout, action), {"reason": "x"}).status_code == 403


def test_an_operator_pauses_with_an_optional_reason(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    client = page_client(roles.OPERATOR)
    response = client.post(
        action_url(rollout, "pause"), {"reason": "", "expected_status": "active", "expected_ring": "pilot"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:rollout-detail", args=[rollout.rollout_id])
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    event = AuditEvent.objects.get(rollout=rollout, action="PAUSE")
    assert event.actor_name == "operator-user"
    assert "Rollout paused in Pilot." in messages_of(response)


def test_a_release_manager_promotes_and_sees_the_new_ring(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    client = page_client(roles.RELEASE_MANAGER)
    response = client.post(
        action_url(rollout, "promote"), {"expected_status": "active", "expected_ring": "pilot"}
    )
    rollout.refresh_from_db()
    assert rollout.current_ring == "ring_5"
    assert "Promoted: now in Ring 5%." in messages_of(response)
    assert AuditEvent.objects.filter(
        rollout=rollout, action="PROMOTE", actor_name="release_manager-user"
    ).exists()


def test_it_refuses_a_rollback_without_a_reason(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    response = page_client(roles.RELEASE_MANAGER).post(action_url(rollout, "rollback"), {"reason": "   "})
    assert response.status_code == 302
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ACTIVE
    assert messages_of(response) == ["Rollback not done: A reason is required."]


def test_a_rollback_with_a_reason_is_recorded_with_it(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    page_client(roles.RELEASE_MANAGER).post(action_url(rollout, "rollback"), {"reason": "Boot loop on gen3"})
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK
    assert AuditEvent.objects.get(rollout=rollout, action="ROLLBACK").reason == "Boot loop on gen3"


def test_it_shows_the_gates_refusal_as_a_visible_error(page_client, rollout_factory):
    rollout = rollout_factory("pilot", healthy=False)
    client = page_client(roles.RELEASE_MANAGER)
    response = client.post(action_url(rollout, "promote"), follow=True)
    rollout.refresh_from_db()
    assert rollout.current_ring == "pilot"
    html = response.content.decode()
    assert 'data-message-level="error"' in html
    assert "Cannot promote: WAIT — Installing: 0 of 3 devices run" in html


def test_it_refuses_a_decision_taken_on_a_stale_page(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    # The person saw the rollout paused; meanwhile it was resumed (it is active now).
    response = page_client(roles.RELEASE_MANAGER).post(
        action_url(rollout, "rollback"),
        {"reason": "x", "expected_status": "paused", "expected_ring": "pilot"},
    )
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ACTIVE
    assert "while this request was on its way" in messages_of(response)[0]


def test_the_confirmation_page_is_the_fallback_without_script(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    response = page_client(roles.RELEASE_MANAGER).get(action_url(rollout, "rollback"))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="reason"' in html and "required" in html
    assert page_client(roles.VIEWER).get(action_url(rollout, "rollback")).status_code == 403


def test_a_release_manager_creates_a_rollout_from_the_new_rollout_page(page_client, rollout_factory):
    plan = fast_plan()
    release = ReleaseFactory(version="v7.0")
    client = page_client(roles.RELEASE_MANAGER)
    assert client.get(reverse("portal:rollout-new")).status_code == 200
    response = client.post(reverse("portal:rollout-new"), {"release": release.pk, "plan": plan.pk})
    rollout = Rollout.objects.get(release=release)
    assert response["Location"] == reverse("portal:rollout-detail", args=[rollout.rollout_id])
    assert rollout.created_by.username == "release_manager-user"


@pytest.mark.parametrize("role", [roles.VIEWER, roles.OPERATOR])
def test_it_refuses_the_new_rollout_page_below_release_manager(page_client, role):
    release = ReleaseFactory()
    client = page_client(role)
    assert client.get(reverse("portal:rollout-new")).status_code == 403
    assert client.post(reverse("portal:rollout-new"), {"release": release.pk}).status_code == 403
    assert not Rollout.objects.exists()


# --- emergency stop, incidents, alerts ---------------------------------------------------------------


def test_the_emergency_stop_control_is_offered_to_operators_and_not_viewers(page_client):
    assert (
        "Raise emergency stop"
        not in page_client(roles.VIEWER).get(reverse("portal:dashboard")).content.decode()
    )
    assert (
        "Raise emergency stop"
        in page_client(roles.OPERATOR).get(reverse("portal:dashboard")).content.decode()
    )


def test_a_viewer_cannot_raise_the_emergency_stop(page_client):
    response = page_client(roles.VIEWER).post(
        reverse("portal:emergency-stop"), {"operation": "raise", "reason": "x"}
    )
    assert response.status_code == 403
    assert not FleetState.load().emergency_stop


def test_an_operator_raises_the_emergency_stop_with_a_reason_and_every_page_shows_it(
    page_client, rollout_factory
):
    rollout = rollout_factory("pilot")
    client = page_client(roles.OPERATOR)
    refused = client.post(reverse("portal:emergency-stop"), {"operation": "raise", "reason": ""})
    assert "A reason is required" in messages_of(refused)[0]
    assert not FleetState.load().emergency_stop
    client.post(reverse("portal:emergency-stop"), {"operation": "raise", "reason": "Hospital network outage"})
    assert FleetState.load().emergency_stop
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    html = page_client(roles.VIEWER).get(reverse("portal:device-list")).content.decode()
    assert 'data-emergency="on"' in html and "Hospital network outage" in html
    client.post(reverse("portal:emergency-stop"), {"operation": "lift", "reason": "Network back"})
    assert not FleetState.load().emergency_stop


def test_the_emergency_stop_disables_resume_with_its_reason(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    page_client(roles.OPERATOR).post(
        reverse("portal:emergency-stop"), {"operation": "raise", "reason": "Outage"}
    )
    html = (
        page_client(roles.RELEASE_MANAGER)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )
    button = re.search(r'<button[^>]*data-action="resume"[^>]*>', html).group(0)
    assert "disabled" in button
    assert "the emergency stop is on" in html


def test_operators_open_and_resolve_incidents_and_viewers_cannot(page_client):
    release = ReleaseFactory(version="v5.5")
    viewer = page_client(roles.VIEWER)
    assert viewer.post(reverse("portal:incident-open"), {"severity": "sev1", "title": "x"}).status_code == 403
    operator = page_client(roles.OPERATOR)
    operator.post(
        reverse("portal:incident-open"), {"severity": "sev1", "title": "Screens black", "release": release.pk}
    )
    incident = Incident.objects.get(title="Screens black")
    assert incident.release == release
    assert viewer.post(reverse("portal:incident-resolve", args=[incident.pk])).status_code == 403
    operator.post(reverse("portal:incident-resolve", args=[incident.pk]), {"reason": "Fixed"})
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.RESOLVED


def test_the_incident_list_filters_by_status(page_client):
    IncidentFactory(title="Still burning")
    IncidentFactory(title="Long gone", status=IncidentStatus.RESOLVED)
    client = page_client(roles.VIEWER)
    open_html = client.get(reverse("portal:incident-list")).content.decode()
    assert "Still burning" in open_html and "Long gone" not in open_html
    assert "Long gone" in client.get(reverse("portal:incident-list"), {"status": "resolved"}).content.decode()


def test_operators_acknowledge_alerts_and_viewers_cannot(page_client):
    alert = alert_raise(level=AlertLevel.CRITICAL, kind="AUTO_ROLLBACK", title="SafeRoll rolled back v1")
    assert (
        page_client(roles.VIEWER).post(reverse("portal:alert-acknowledge", args=[alert.pk])).status_code
        == 403
    )
    page_client(roles.OPERATOR).post(reverse("portal:alert-acknowledge", args=[alert.pk]))
    alert.refresh_from_db()
    assert alert.acknowledged_by == "operator-user"
    assert Alert.objects.filter(acknowledged_at__isnull=True).count() == 0


# --- lists ------------------------------------------------------------------------------------------


def test_the_device_list_filters_and_paginates(page_client):
    DeviceFactory(device_id="tv-ward-1", ring="ring_5", app_version="v2.1")
    DeviceFactory(device_id="tv-ward-2", ring="pilot", app_version="v2.0")
    for n in range(55):
        DeviceFactory(device_id=f"kiosk-{n:03d}", ring="ring_100")
    client = page_client(roles.VIEWER)
    html = client.get(reverse("portal:device-list"), {"ring": "ring_5"}).content.decode()
    assert "tv-ward-1" in html and "tv-ward-2" not in html
    html = client.get(reverse("portal:device-list"), {"search": "ward", "version": "v2.0"}).content.decode()
    assert "tv-ward-2" in html and "tv-ward-1" not in html
    first = client.get(reverse("portal:device-list"), {"ring": "ring_100"}).content.decode()
    assert "Page 1 of 2" in first and "kiosk-049" in first and "kiosk-050" not in first
    second = client.get(reverse("portal:device-list"), {"ring": "ring_100", "page": 2}).content.decode()
    assert "kiosk-050" in second


def test_the_device_detail_shows_versions_deployments_and_recent_checks(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    deployment = rollout.deployments.select_related("device").first()
    deployment.last_error = "Signature mismatch"
    deployment.save(update_fields=["last_error"])
    device = deployment.device
    HealthCheckFactory(device=device, version="v-old", checkin_latency_ms=321)
    html = (
        page_client(roles.VIEWER)
        .get(reverse("portal:device-detail", args=[device.device_id]))
        .content.decode()
    )
    assert rollout.rollout_id in html
    assert "Signature mismatch" in html
    assert "321 ms" in html
    assert page_client(roles.VIEWER).get(reverse("portal:device-detail", args=["nope"])).status_code == 404


def test_the_audit_log_filters_by_action_actor_and_rollout(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    other = rollout_factory("created")
    client = page_client(roles.VIEWER)
    html = client.get(reverse("portal:audit-log"), {"action": "START"}).content.decode()
    shown = re.findall(r'<span class="badge tone-\w+">(\w+)</span></td>', html)
    assert shown == ["START"]
    html = client.get(reverse("portal:audit-log"), {"rollout": other.rollout_id}).content.decode()
    assert other.rollout_id in html and f">{rollout.rollout_id}<" not in html
    html = client.get(reverse("portal:audit-log"), {"actor": "nobody"}).content.decode()
    assert "No event matches these filters" in html
    assert client.get(reverse("portal:audit-log"), {"date_from": "2000-01-01"}).status_code == 200


def test_releases_and_cohorts_list_what_exists(page_client, rollout_factory):
    rollout = rollout_factory("pilot", version="v8.8")
    client = page_client(roles.VIEWER)
    html = client.get(reverse("portal:release-list")).content.decode()
    assert "v8.8" in html and rollout.rollout_id in html
    assert client.get(reverse("portal:cohort-list")).status_code == 200


# --- install progress, bake and override ----------------------------------------------------------


def _baking_rollout(rollout_factory) -> Rollout:
    """A rollout in ring_5, whose rings after the pilot bake five minutes; ring_5 runs the release
    and has baked 4 min 18 s."""
    rollout = rollout_factory("created")
    stages = [dict(stage, bake_minutes=0 if stage["ring"] == "pilot" else 5) for stage in rollout.stages]
    Rollout.objects.filter(pk=rollout.pk).update(stages=stages)
    rollout.refresh_from_db()
    lifecycle.rollout_start(rollout=rollout, actor=None)
    report_healthy(rollout)
    lifecycle.rollout_promote(rollout=rollout, actor=None)
    report_healthy(rollout)
    Rollout.objects.filter(pk=rollout.pk).update(bake_started_at=timezone.now() - dt.timedelta(seconds=258))
    rollout.refresh_from_db()
    return rollout


def test_it_shows_the_install_progress_and_the_bake_countdown(page_client, rollout_factory):
    rollout = _baking_rollout(rollout_factory)
    html = (
        page_client(roles.VIEWER)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )

    assert re.search(r"data-install-count>3 of 3</strong> devices run", html)
    assert 'aria-valuenow="100"' in html
    assert "90% needed" in html
    assert re.search(r"Baking, 4\d s left of 5 min\.", html)
    assert "Promote waits: Baking: 4" in html
    assert '<div class="decision-action">Baking</div>' in html


def test_it_says_the_bake_starts_when_enough_devices_run_the_release(page_client, rollout_factory):
    rollout = _baking_rollout(rollout_factory)
    DeviceDeployment.objects.filter(rollout=rollout, ring="ring_5").update(state="pending")
    HealthCheck.objects.filter(version=rollout.release.version, ring="ring_5").delete()
    rollups_rebuild()
    html = (
        page_client(roles.OPERATOR)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )

    assert "A 5 min bake starts when 90% run the release." in html
    # An operator cannot promote, but sees why it waits.
    assert f"Promote waits: Installing: 0 of 3 devices run {rollout.release.version}; 90% needed." in html
    assert '<div class="decision-action">Waiting for the release to install</div>' in html
    assert "Promote anyway" not in html


def test_it_offers_promote_anyway_to_release_managers_only(page_client, rollout_factory):
    rollout = _baking_rollout(rollout_factory)
    url = reverse("portal:rollout-detail", args=[rollout.rollout_id])

    manager_html = page_client(roles.RELEASE_MANAGER).get(url).content.decode()
    operator_html = page_client(roles.OPERATOR).get(url).content.decode()

    assert 'data-action="promote-override"' in manager_html
    assert "Promote anyway" in manager_html
    assert 'name="override" value="1"' in manager_html
    assert "Promote anyway" not in operator_html


def test_promote_anyway_needs_a_reason_and_records_the_override(page_client, rollout_factory):
    rollout = _baking_rollout(rollout_factory)
    client = page_client(roles.RELEASE_MANAGER)
    expected = {"expected_status": "active", "expected_ring": "ring_5", "override": "1"}

    without = client.post(action_url(rollout, "promote"), {**expected, "reason": ""}, follow=True)
    rollout.refresh_from_db()
    assert rollout.current_ring == "ring_5"
    assert "Not done: A reason is required." in messages_of(without)

    done = client.post(
        action_url(rollout, "promote"), {**expected, "reason": "Field test signed off"}, follow=True
    )

    rollout.refresh_from_db()
    assert rollout.current_ring == "ring_25"
    assert "Promoted: now in Ring 25%." in messages_of(done)
    override = AuditEvent.objects.get(rollout=rollout, action="OVERRIDE")
    assert (override.reason, override.evaluation["action"]) == ("Field test signed off", "WAIT")
    assert 'data-event="OVERRIDE"' in done.content.decode()


def test_an_operator_cannot_forge_an_override(page_client, rollout_factory):
    rollout = _baking_rollout(rollout_factory)

    response = page_client(roles.OPERATOR).post(
        action_url(rollout, "promote"), {"override": "1", "reason": "Hurry"}
    )

    assert response.status_code == 403
    rollout.refresh_from_db()
    assert rollout.current_ring == "ring_5"


def test_it_offers_resume_anyway_when_the_gates_pause(page_client, rollout_factory):
    rollout = rollout_factory("pilot")
    # With the healthy checks already in, the ring's mean crash-free rate is about 97.9%: PAUSE.
    report_healthy(rollout, crash_free=0.96)
    lifecycle.rollout_pause(rollout=rollout, actor=None, reason="Failing")

    html = (
        page_client(roles.RELEASE_MANAGER)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )

    assert 'data-decision="PAUSE"' in html
    assert 'data-action="resume-override"' in html
    assert "Resume anyway" in html


def test_it_shows_the_previous_releases_figures_and_an_outside_event_beside_the_gates(
    page_client, rollout_factory
):
    rollout = rollout_factory("pilot", healthy=False)
    Rollout.objects.filter(pk=rollout.pk).update(
        gate_config={**rollout.gate_config, "baseline_min_sample": 3}
    )
    deployments = rollout.deployments.select_related("device")
    deployments.update(state="activated", activated_at=timezone.now() - dt.timedelta(minutes=2))
    on_release = {deployment.device_id for deployment in deployments}
    for device in Device.objects.all():
        released = device.pk in on_release
        for _ in range(3):
            HealthCheckFactory(
                device=device,
                version=rollout.release.version if released else "v2.0",
                checkin_latency_ms=800 if released else 790,
            )

    html = (
        page_client(roles.VIEWER)
        .get(reverse("portal:rollout-detail", args=[rollout.rollout_id]))
        .content.decode()
    )

    assert 'data-decision="WAIT"' in html
    assert "Outside event, not the release: median latency 800 ms (goal &lt;= 500 ms)" in html
    assert "Previous release over the same window: 790 ms, failing as well" in html
    assert "800 ms on the release, 790 ms on the previous release" in html
    assert "Latency against the previous release" in html
