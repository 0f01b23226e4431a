"""The portal's fleet-wide pages: sign-in, dashboard, emergency stop, alerts and the audit log.

Pages are server-rendered and read-only for every role; a POST checks the user's permission here
and then calls a service with actor=request.user, shows the service's refusal as a message and
redirects back (post/redirect/get). The rollout and device pages live in their apps' views.py.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

import django_filters
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Max, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from devices.choices import DeviceStatus
from devices.models import Device
from rollouts.choices import RolloutStatus
from rollouts.fleet_release import split_fleet
from rollouts.models import Evaluation, Rollout
from rollouts.permissions import can_act, can_view_rollouts
from rollouts.selectors import rollout_ring_health
from rollouts.services.emergency import emergency_stop_lift, emergency_stop_raise
from saferoll.core.alerts import alert_acknowledge
from saferoll.core.api.audit import AuditEventFilter
from saferoll.core.errors import ServiceRefused
from saferoll.core.forms import SignInForm, locked_out_status
from saferoll.core.models import Alert, AuditEvent, FleetState
from telemetry.health import RingHealth

LOGIN_URL = "portal:login"
PAGE_SIZE = 50
# Finished rollouts shown on the dashboard (the audit log and the API hold the rest).
DASHBOARD_HISTORY = 12
EMERGENCY_PERMISSION = "saferoll.emergency_stop"


class AuthenticatedHttpRequest(HttpRequest):
    """The request of a view behind reader_required: login_required lets only a signed-in user through."""

    user: User


def reader_required(view: Callable) -> Callable:
    """Signed in (else to the login page) and holding a role that reads rollouts (else 403)."""

    @login_required(login_url=LOGIN_URL)
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not can_view_rollouts(request.user):
            raise PermissionDenied("Your account has no SafeRoll role yet; ask an admin for one.")
        return view(request, *args, **kwargs)

    return wrapper


def back(request: HttpRequest, default: str) -> HttpResponse:
    """Redirect to the page the form came from (a safe `next`), else to `default`."""
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(default)


def refusal_message(refused: ServiceRefused) -> str:
    """A service's refusal as the portal shows it: what it says, and why the gates said no when they did."""
    reason = refused.extra.get("reason")
    return f"{refused.sentences()} — {reason}" if reason else refused.sentences()


def paginate(request: HttpRequest, queryset, per_page: int = PAGE_SIZE):
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


# --- sign in and out ---------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    redirect_authenticated_user = True
    authentication_form = SignInForm

    def get_default_redirect_url(self):
        return reverse("portal:dashboard")

    def form_invalid(self, form):
        return locked_out_status(super().form_invalid(form), form)


class LogoutView(auth_views.LogoutView):
    next_page = LOGIN_URL


# --- dashboard ---------------------------------------------------------------------------------


def autopilot_heartbeat() -> dict:
    """When the autopilot last finished a round, and whether that is too long ago (SPEC §6)."""
    state = FleetState.load()
    stale_after = int(settings.SAFEROLL_AUTOPILOT_PERIOD_SECONDS * settings.SAFEROLL_AUTOPILOT_STALE_PERIODS)
    last = state.autopilot_last_run
    age = int((timezone.now() - last).total_seconds()) if last else None
    return {
        "last_run": last,
        "age_seconds": age,
        "stale_after": stale_after,
        "stale": age is None or age > stale_after,
    }


def fleet_summary() -> dict:
    """Devices by version, by status and by ring, for the dashboard's fleet panel."""
    total = Device.objects.count()
    by_status = dict(Device.objects.order_by().values_list("status").annotate(n=Count("id")))

    def share(count: int) -> int:
        return round(100 * count / total) if total else 0

    statuses = [
        {
            "value": value,
            "label": label,
            "count": by_status.get(value, 0),
            "share": share(by_status.get(value, 0)),
        }
        for value, label in DeviceStatus.choices
    ]
    by_version = [
        {**row, "share": share(row["count"])}
        for row in Device.objects.order_by()
        .values("app_version")
        .annotate(count=Count("id"))
        .order_by("-count", "app_version")
    ]
    by_ring = dict(Device.objects.order_by().values_list("ring").annotate(n=Count("id")))
    ring_counts = [(ring, by_ring.pop(ring, 0)) for ring in settings.SAFEROLL_RING_SHARES]
    ring_counts += sorted(by_ring.items())
    rings = [{"ring": ring, "count": count, "share": share(count)} for ring, count in ring_counts]
    return {"total": total, "statuses": statuses, "versions": by_version, "rings": rings}


def _latest_evaluations() -> Subquery:
    return Subquery(
        Evaluation.objects.filter(rollout=OuterRef("pk")).order_by("-created_at", "-id").values("action")[:1]
    )


@dataclass(frozen=True)
class RolloutCard:
    """A rollout in flight as the dashboard shows it, with its ring's health at a glance."""

    rollout: Rollout
    health: RingHealth | None
    min_sample: int


@dataclass(frozen=True)
class RolledBack:
    rollout: Rollout
    reason: str


def dashboard_context(request: HttpRequest) -> dict:
    rollouts = Rollout.objects.select_related("release", "plan").annotate(
        last_decision=_latest_evaluations(), last_event_at=Max("events__created_at")
    )
    # Health at a glance: the same figures the gates judge (a handful of rollouts is in flight).
    in_flight = [
        RolloutCard(
            rollout=rollout,
            health=rollout_ring_health(rollout, rollout.current_ring) if rollout.current_ring else None,
            min_sample=rollout.gate_config.get("min_sample", 0),
        )
        for rollout in rollouts.filter(
            status__in=(RolloutStatus.CREATED, RolloutStatus.ACTIVE, RolloutStatus.PAUSED)
        ).order_by("-created_at", "-id")
    ]
    completed = list(
        rollouts.filter(status=RolloutStatus.COMPLETED).order_by("-finished_at")[:DASHBOARD_HISTORY]
    )
    failed = list(
        rollouts.filter(status=RolloutStatus.ROLLED_BACK).order_by("-finished_at")[:DASHBOARD_HISTORY]
    )
    last_reasons = dict(
        AuditEvent.objects.filter(
            rollout__in=[r.pk for r in failed], action__in=("ROLLBACK", "AUTO_ROLLBACK")
        )
        .order_by("rollout_id", "created_at")
        .values_list("rollout_id", "reason")
    )
    counts = dict(Rollout.objects.order_by().values_list("status").annotate(n=Count("id")))
    return {
        "in_flight": in_flight,
        "completed": completed,
        "failed": [
            RolledBack(rollout=rollout, reason=last_reasons.get(rollout.pk, "")) for rollout in failed
        ],
        "completed_total": counts.get(RolloutStatus.COMPLETED, 0),
        "failed_total": counts.get(RolloutStatus.ROLLED_BACK, 0),
        "fleet": fleet_summary(),
        # Devices of one variant on several versions that no rollout under way explains.
        "split_fleet": split_fleet(),
        "heartbeat": autopilot_heartbeat(),
        "fleet_state": FleetState.load(),
        "can_emergency": request.user.has_perm(EMERGENCY_PERMISSION),
        "alerts": Alert.objects.filter(acknowledged_at__isnull=True).select_related("rollout")[:5],
        "can_create": can_act(request.user, "create"),
        "can_acknowledge": can_act(request.user, "pause"),
    }


@require_GET
@reader_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/dashboard.html", dashboard_context(request))


@require_GET
@reader_required
def dashboard_fragment(request: HttpRequest) -> HttpResponse:
    """The dashboard's live parts, re-fetched by the page when something changes."""
    return render(request, "portal/partials/dashboard_live.html", dashboard_context(request))


@require_GET
@reader_required
def chrome_fragment(request: HttpRequest) -> HttpResponse:
    """The parts of every page's frame that change: the emergency banner and the alert count."""
    return render(request, "portal/partials/chrome_live.html")


# --- emergency stop ----------------------------------------------------------------------------


@require_POST
@reader_required
def emergency_stop(request: AuthenticatedHttpRequest) -> HttpResponse:
    if not request.user.has_perm(EMERGENCY_PERMISSION):
        raise PermissionDenied("Your role does not allow you to use the emergency stop.")
    operation = request.POST.get("operation")
    reason = (request.POST.get("reason") or "").strip()
    if operation not in ("raise", "lift"):
        messages.error(request, "Say whether to raise or lift the emergency stop.")
    elif not reason:
        messages.error(request, "A reason is required to raise or lift the emergency stop.")
    elif operation == "raise":
        try:
            state = emergency_stop_raise(actor=request.user, reason=reason)
        except ServiceRefused as refused:
            messages.error(request, refusal_message(refused))
        else:
            if state is None:
                messages.info(request, "The emergency stop was already on.")
            else:
                messages.warning(request, "Emergency stop raised: every active rollout is paused.")
    else:
        state = emergency_stop_lift(actor=request.user, reason=reason)
        if state is None:
            messages.info(request, "The emergency stop was already off.")
        else:
            messages.success(request, "Emergency stop lifted. Paused rollouts stay paused until resumed.")
    return back(request, reverse("portal:dashboard"))


# --- alerts ------------------------------------------------------------------------------------


@require_GET
@reader_required
def alert_list(request: HttpRequest) -> HttpResponse:
    show = request.GET.get("show", "open")
    alerts = Alert.objects.select_related("rollout", "device")
    if show == "open":
        alerts = alerts.filter(acknowledged_at__isnull=True)
    page = paginate(request, alerts)
    return render(
        request,
        "portal/alerts.html",
        {
            "page": page,
            "show": show,
            "open_count": Alert.objects.filter(acknowledged_at__isnull=True).count(),
            "can_acknowledge": can_act(request.user, "pause"),
        },
    )


@require_POST
@reader_required
def alert_ack(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    # Acknowledging is the on-call's job: whoever may pause a rollout (operators and up).
    if not can_act(request.user, "pause"):
        raise PermissionDenied("Your role does not allow you to acknowledge alerts.")
    alert = get_object_or_404(Alert, pk=pk)
    alert = alert_acknowledge(alert=alert, actor=request.user)
    messages.success(request, f"Alert acknowledged ({alert.acknowledged_by}).")
    return back(request, reverse("portal:alert-list"))


# --- audit log ---------------------------------------------------------------------------------


class PortalAuditFilter(AuditEventFilter):
    """The API's audit filters, plus whole days for the page's date pickers."""

    date_from = django_filters.DateFilter(field_name="created_at", lookup_expr="date__gte")
    date_to = django_filters.DateFilter(field_name="created_at", lookup_expr="date__lte")

    class Meta(AuditEventFilter.Meta):
        fields = [*AuditEventFilter.Meta.fields, "date_from", "date_to"]


@require_GET
@reader_required
def audit_log(request: HttpRequest) -> HttpResponse:
    events = AuditEvent.objects.select_related("rollout").order_by("-created_at", "-id")
    filterset = PortalAuditFilter(request.GET, queryset=events)
    page = paginate(request, filterset.qs)
    distinct = AuditEvent.objects.order_by()
    return render(
        request,
        "portal/audit.html",
        {
            "page": page,
            "filters": filterset.form,
            "values": request.GET,
            "filtered": any(request.GET.get(key) for key in filterset.form.fields),
            "actions": distinct.values_list("action", flat=True).distinct().order_by("action"),
            "actors": distinct.values_list("actor_name", flat=True).distinct().order_by("actor_name"),
            "object_types": distinct.values_list("object_type", flat=True).distinct().order_by("object_type"),
            "today": dt.date.today().isoformat(),
        },
    )
