"""The portal pages (server-rendered, updated live over Channels). Names are in the "portal" namespace."""

from django.urls import path, re_path

from saferoll.portal import device_views, plan_views, rollout_views
from saferoll.portal import views as portal_views

app_name = "portal"

urlpatterns = [
    path("login", portal_views.LoginView.as_view(), name="login"),
    path("logout", portal_views.LogoutView.as_view(), name="logout"),
    path("dashboard", portal_views.dashboard, name="dashboard"),
    path("dashboard/fragment", portal_views.dashboard_fragment, name="dashboard-fragment"),
    path("fragments/chrome", portal_views.chrome_fragment, name="chrome-fragment"),
    path("emergency-stop", portal_views.emergency_stop, name="emergency-stop"),
    path("alerts", portal_views.alert_list, name="alert-list"),
    path("alerts/<int:pk>/acknowledge", portal_views.alert_ack, name="alert-acknowledge"),
    path("audit", portal_views.audit_log, name="audit-log"),
    # "new" before the rollout id, which it would otherwise match.
    path("rollouts/new", rollout_views.rollout_new, name="rollout-new"),
    path("rollouts/<str:rollout_id>", rollout_views.rollout_detail, name="rollout-detail"),
    path("rollouts/<str:rollout_id>/fragment", rollout_views.rollout_fragment, name="rollout-fragment"),
    path("rollouts/<str:rollout_id>/series.json", rollout_views.rollout_series, name="rollout-series"),
    re_path(
        r"^rollouts/(?P<rollout_id>[^/]+)/(?P<action>start|promote|pause|resume|rollback)$",
        rollout_views.rollout_action,
        name="rollout-action",
    ),
    path("releases", rollout_views.release_list, name="release-list"),
    path("plans", plan_views.plan_list, name="plan-list"),
    path("plans/<str:name>", plan_views.plan_detail, name="plan-detail"),
    path("plans/<str:name>/whatif", plan_views.plan_whatif, name="plan-whatif"),
    path("incidents", rollout_views.incident_list, name="incident-list"),
    path("incidents/open", rollout_views.incident_open, name="incident-open"),
    path("incidents/<int:pk>/resolve", rollout_views.incident_resolve, name="incident-resolve"),
    path("devices", device_views.device_list, name="device-list"),
    path("devices/<str:device_id>", device_views.device_detail, name="device-detail"),
    path("cohorts", device_views.cohort_list, name="cohort-list"),
]
