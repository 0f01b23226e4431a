"""Deployments: the devices a rollout's stage targets, and each device's side of a rollout (what it
should run now, and the deployment steps it reports).

Device reports are not audit events (a fleet sends thousands): the DeviceDeployment row, with the
time of each step, is their record.
"""

import dataclasses
import datetime as dt
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Q, QuerySet, Value, When, Window
from django.db.models.functions import RowNumber
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from devices.models import Cohort, Device
from rollouts.choices import DEPLOYMENT_STEPS, LIVE_DEPLOYMENT_STATES, DeploymentState, RolloutStatus
from rollouts.fleet_release import rollback_target, stage_devices
from rollouts.maintenance import device_windows, windows_activation_start
from rollouts.models import DeviceDeployment, Release, Rollout
from rollouts.waves import first_wave, wave_minute, waves_released_by
from saferoll.core.audit import audit_record
from saferoll.core.errors import ServiceRefused, bad_input, not_found

# Logs a device attaches to a deployment (002 E15) are capped so one device cannot fill the table.
DIAGNOSTICS_MAX_BYTES = 64 * 1024
ERROR_MAX_CHARS = 2000

# Rollouts whose deployments still tell devices what to do. A completed rollout's last ring passed
# its gates: the devices of it that have not installed yet (off, slow, or behind the server's
# queue when the bake ended) still get the release when they next ask.
_STEERING_STATUSES = (
    RolloutStatus.ACTIVE,
    RolloutStatus.PAUSED,
    RolloutStatus.COMPLETED,
    RolloutStatus.ROLLED_BACK,
)
# Rollouts that let a device install and activate now.
_INSTALLING_STATUSES = (RolloutStatus.ACTIVE, RolloutStatus.COMPLETED)
_INSTALL_STATES = (DeploymentState.PENDING, DeploymentState.DOWNLOADING, DeploymentState.VERIFIED)
_STEP_TIMESTAMP: dict[str, str] = {
    DeploymentState.DOWNLOADING: "downloading_at",
    DeploymentState.VERIFIED: "verified_at",
    DeploymentState.ACTIVATED: "activated_at",
    DeploymentState.FAILED: "failed_at",
    DeploymentState.ROLLED_BACK: "rolled_back_at",
}


class DesiredAction:
    NONE = "none"
    INSTALL = "install"
    ROLLBACK = "rollback"


@dataclasses.dataclass(frozen=True)
class DesiredState:
    """What a device should do now. `release` is None for "none", and for a rollback with no
    previous release (then `rollback_version` is the version the device ran before)."""

    action: str
    version: str = ""
    deployment: DeviceDeployment | None = None
    release: Release | None = None
    rollback_version: str = ""
    activate: bool = False
    activate_after: dt.datetime | None = None


def activation_start(
    window_start: dt.time | None, window_end: dt.time | None, now: dt.datetime
) -> dt.datetime | None:
    """When a device may activate under a daily UTC window: None when it may now (no window, or
    inside it), else the next start of the window. A window whose end is before its start spans
    midnight (22:00 to 04:00); an empty one (start == end) is treated as no window."""
    if window_start is None or window_end is None or window_start == window_end:
        return None
    now_utc = now.astimezone(dt.UTC)
    moment = now_utc.time().replace(tzinfo=None)
    if window_start < window_end:
        inside = window_start <= moment < window_end
    else:
        inside = moment >= window_start or moment < window_end
    if inside:
        return None
    start_today = dt.datetime.combine(now_utc.date(), window_start, tzinfo=dt.UTC)
    return start_today if start_today > now_utc else start_today + dt.timedelta(days=1)


def device_activation_start(*, device: Device, rollout: Rollout, now: dt.datetime) -> dt.datetime | None:
    """When the device may activate: under the maintenance windows of its site, else of its region,
    else of the whole fleet (rollouts.maintenance), each in its own time zone; under the rollout's
    daily UTC window when none of them applies. None: now."""
    windows = device_windows(rollout.maintenance_windows or [], site=device.site, region=device.region)
    if windows:
        return windows_activation_start(windows, now)
    return activation_start(rollout.activation_window_start, rollout.activation_window_end, now)


def deployment_released(deployment: DeviceDeployment, now: dt.datetime) -> bool:
    """Whether the device may start installing: its wave was released and no retry backoff runs."""
    return deployment.released_at is not None and deployment.released_at <= now


def device_steering_deployment(device: Device) -> DeviceDeployment | None:
    """The device's newest live deployment in a rollout that still steers it."""
    return (
        DeviceDeployment.objects.filter(
            device=device, state__in=LIVE_DEPLOYMENT_STATES, rollout__status__in=_STEERING_STATUSES
        )
        .select_related("rollout__release__previous_release")
        .order_by("-created_at", "-id")
        .first()
    )


def device_desired_state(*, device: Device, now: dt.datetime | None = None) -> DesiredState:
    """Nothing to do, a release to download (and when it may be activated), or a rollback."""
    now = now or timezone.now()
    deployment = device_steering_deployment(device)
    nothing = DesiredState(action=DesiredAction.NONE, version=device.app_version)
    if deployment is None:
        return nothing
    rollout = deployment.rollout
    release = rollout.release
    if deployment.state == DeploymentState.ROLLING_BACK:
        target, version = rollback_target(
            release=release, variant_id=device.variant_id, from_version=deployment.from_version
        )
        return DesiredState(
            action=DesiredAction.ROLLBACK,
            version=version,
            deployment=deployment,
            release=target,
            rollback_version=version,
        )
    if deployment.state not in _INSTALL_STATES:
        return nothing
    if deployment.state == DeploymentState.PENDING and not deployment_released(deployment, now):
        # Its wave has not come yet, or a failed attempt waits out its backoff: the device keeps
        # the version it runs and asks again later.
        return nothing
    if rollout.status in _INSTALLING_STATUSES:
        return DesiredState(
            action=DesiredAction.INSTALL,
            version=release.version,
            deployment=deployment,
            release=release,
            activate=True,
            activate_after=device_activation_start(device=device, rollout=rollout, now=now),
        )
    if rollout.status == RolloutStatus.PAUSED and deployment.state != DeploymentState.PENDING:
        # A device that already started may finish downloading, but not activate (002 B4);
        # a device that has not started waits for the rollout to resume.
        return DesiredState(
            action=DesiredAction.INSTALL,
            version=release.version,
            deployment=deployment,
            release=release,
            activate=False,
        )
    return nothing


def _deployment_for(*, device: Device, rollout_id: str) -> DeviceDeployment:
    deployment = (
        DeviceDeployment.objects.filter(device=device, rollout__rollout_id=rollout_id)
        .select_related("rollout__release__previous_release", "device")
        .first()
    )
    if deployment is None:
        raise not_found(f"Device {device.device_id} has no deployment in rollout {rollout_id}.")
    return deployment


def _validate_diagnostics(diagnostics: str) -> None:
    if len(diagnostics.encode()) > DIAGNOSTICS_MAX_BYTES:
        raise bad_input(
            f"Diagnostics are at most {DIAGNOSTICS_MAX_BYTES // 1024} KB; send the tail of the log.",
            field="diagnostics",
        )


@transaction.atomic
def deployment_report(
    *,
    device: Device,
    rollout: Rollout | str,
    state: str,
    error: str = "",
    diagnostics: str = "",
    now: dt.datetime | None = None,
) -> DeviceDeployment:
    """Record a step the device reports for its deployment in `rollout` (a Rollout or its id).

    The step must follow one of its allowed predecessors (DEPLOYMENT_STEPS); reporting the state the
    deployment is already in changes nothing, so a retried request is harmless. Anything else is a
    refused (409). Refused (404) when the device has no deployment in that rollout."""
    rollout_id = rollout.rollout_id if isinstance(rollout, Rollout) else rollout
    if state not in DEPLOYMENT_STEPS:
        raise bad_input(f"Devices report one of: {', '.join(DEPLOYMENT_STEPS)}.", field="state")
    if state == DeploymentState.FAILED and not error.strip():
        raise bad_input("A failed deployment needs an error message saying what went wrong.", field="error")
    if len(error) > ERROR_MAX_CHARS:
        raise bad_input(f"An error message is at most {ERROR_MAX_CHARS} characters.", field="error")
    _validate_diagnostics(diagnostics)
    now = now or timezone.now()
    deployment = _deployment_for(device=device, rollout_id=rollout_id)
    rollout = deployment.rollout

    if rollout.status == RolloutStatus.ROLLED_BACK and state != DeploymentState.ROLLED_BACK:
        raise ServiceRefused(
            f"Rollout {rollout_id} was rolled back: the only step a device may still report is rolled_back.",
            state=deployment.state,
        )
    if deployment.state == state or _failure_repeated(deployment, state, now):
        return deployment
    allowed_from = DEPLOYMENT_STEPS[state]
    if deployment.state not in allowed_from:
        raise ServiceRefused(
            f"A deployment in state {deployment.state} cannot become {state}; "
            f"{state} follows {' or '.join(allowed_from)}.",
            state=deployment.state,
        )

    changes: dict = {"state": state, "state_changed_at": now, _STEP_TIMESTAMP[state]: now}
    if state == DeploymentState.DOWNLOADING:
        changes["attempts"] = F("attempts") + 1
    if state == DeploymentState.FAILED:
        attempts = deployment.attempts
        if deployment.state == DeploymentState.PENDING:
            # A failure before any download is a try too, or such a device would retry forever.
            attempts += 1
            changes["attempts"] = F("attempts") + 1
        changes.update(
            deployment_failure_changes(retries=rollout.retries, attempts=attempts, error=error, now=now)
        )
        changes["diagnostics"] = diagnostics
    elif diagnostics:
        changes["diagnostics"] = diagnostics
    # Compare-and-swap on the state we checked: of two concurrent reports only one moves the row;
    # the other sees a count of 0 and is answered from the state that won.
    moved = DeviceDeployment.objects.filter(pk=deployment.pk, state=deployment.state).update(**changes)
    if not moved:
        deployment.refresh_from_db()
        if deployment.state == state or _failure_repeated(deployment, state, now):
            return deployment
        raise ServiceRefused(
            f"The deployment changed to {deployment.state} while this report of {state} was being recorded.",
            state=deployment.state,
        )

    if state == DeploymentState.ACTIVATED:
        Device.objects.filter(pk=device.pk).update(app_version=rollout.release.version)
        device.app_version = rollout.release.version
    elif state == DeploymentState.ROLLED_BACK:
        _, version = rollback_target(
            release=rollout.release, variant_id=device.variant_id, from_version=deployment.from_version
        )
        if version:
            Device.objects.filter(pk=device.pk).update(app_version=version)
            device.app_version = version
    deployment.refresh_from_db()
    return deployment


def _failure_repeated(deployment: DeviceDeployment, state: str, now: dt.datetime) -> bool:
    """A failure reported again (a retried request) while the retry it caused waits out its
    backoff is the same failure: it must not use up another retry."""
    return (
        state == DeploymentState.FAILED
        and deployment.state == DeploymentState.PENDING
        and deployment.failed_at is not None
        and not deployment_released(deployment, now)
    )


# --- Retries: a failed try goes back to pending after a backoff while the plan allows more ----------


def retry_delay(retries: dict[str, Any], attempts: int) -> dt.timedelta | None:
    """How long to wait before trying again after the `attempts`-th try failed, under the plan's
    retry policy ({"count", "backoff_seconds"}); None when that failure is final. The wait doubles
    with each retry: backoff, 2 × backoff, 4 × backoff..."""
    retry = max(attempts, 1)
    if retry > retries.get("count", 0):
        return None
    return dt.timedelta(seconds=retries.get("backoff_seconds", 0) * 2 ** (retry - 1))


def deployment_failure_changes(
    *, retries: dict[str, Any], attempts: int, error: str, now: dt.datetime
) -> dict[str, Any]:
    """The fields a failed try writes, for a device's report and the stuck sweep alike: back to
    pending, released again after the backoff, while the plan has retries left; else failed for
    good (only those count in the deployment-failure gate). The error and the time of the failure
    stay either way, so people see what went wrong."""
    changes: dict[str, Any] = {"failed_at": now, "state_changed_at": now, "last_error": error}
    delay = retry_delay(retries, attempts)
    if delay is None:
        changes["state"] = DeploymentState.FAILED
    else:
        changes["state"] = DeploymentState.PENDING
        changes["released_at"] = now + delay
    return changes


def deployments_fail(
    deployments: QuerySet[DeviceDeployment], *, error: str, now: dt.datetime
) -> tuple[int, int]:
    """Fail every deployment of `deployments` (a filtered queryset: its filter is applied again by
    each UPDATE, so a row that moved on meanwhile is left alone). Each is retried or failed for
    good by its rollout's policy and its attempts. Returns (failed for good, retried)."""
    groups = list(deployments.order_by().values_list("rollout_id", "attempts").distinct())
    policies = dict(
        Rollout.objects.filter(pk__in={rollout_id for rollout_id, _ in groups}).values_list("pk", "retries")
    )
    failed = retried = 0
    for rollout_id, attempts in groups:
        changes = deployment_failure_changes(
            retries=policies.get(rollout_id) or {}, attempts=attempts, error=error, now=now
        )
        count = deployments.filter(rollout_id=rollout_id, attempts=attempts).update(**changes)
        if changes["state"] == DeploymentState.FAILED:
            failed += count
        else:
            retried += count
    return failed, retried


@transaction.atomic
def deployment_attach_diagnostics(
    *, device: Device, rollout: Rollout | str, diagnostics: str
) -> DeviceDeployment:
    """Attach the device's logs to its deployment (002 E15), replacing what it sent before."""
    rollout_id = rollout.rollout_id if isinstance(rollout, Rollout) else rollout
    _validate_diagnostics(diagnostics)
    deployment = _deployment_for(device=device, rollout_id=rollout_id)
    # Only the diagnostics column: state reports may be updating the same row concurrently.
    DeviceDeployment.objects.filter(pk=deployment.pk).update(diagnostics=diagnostics)
    deployment.refresh_from_db()
    return deployment


# --- A rollout's side: targeting a stage's devices, and taking the release back ---------------------


# An arbitrary constant: the PostgreSQL advisory lock that serialises stage deploys.
_STAGE_DEPLOY_LOCK = 7_253_010_002


@transaction.atomic
def deploy_stage(*, rollout: Rollout, stage: dict, only: Device | None = None) -> dict[str, Any]:
    """Create the pending deployments of one stage and return what was done (for the audit event).

    The stage's devices are those of its ring(s), or the members of its cohort when it names one;
    a device is skipped when its hardware variant is not one the release supports (an empty list
    supports every variant; a device with no variant runs only such a release), or when it is
    still live in another active or paused rollout, or when this rollout already targeted it, or
    when it already runs the release, or when its credential is revoked (it cannot check in until
    it gets one again, and then joins: deploy_to_joined_device). `only` narrows the stage to one
    device (one that joined later).

    Set-based: the checks are SQL, one INSERT ... SELECT writes the deployments and the skips are
    counted afterwards among the stage's devices left untargeted, so no device row reaches Python
    and memory stays flat however large the ring."""
    ring = stage["ring"]
    if stage.get("cohort") and not Cohort.objects.filter(name=stage["cohort"]).exists():
        raise ServiceRefused(
            f"Cannot deploy {ring} of {rollout.rollout_id}: its cohort {stage['cohort']!r} does not exist."
        )
    _lock_stage_deploys()
    now = timezone.now()
    candidates = stage_devices(stage).exclude(deployments__rollout=rollout).order_by()
    if only is not None:
        candidates = candidates.filter(pk=only.pk)
    release = rollout.release
    supported = list(release.compatible_variants.values_list("pk", flat=True))
    usable = Q(token_hash__isnull=False)
    eligible = usable & Q(variant_id__in=supported) if supported else usable
    busy = _live_elsewhere(rollout)
    targets = candidates.filter(eligible).exclude(app_version=release.version).filter(~busy)
    # A completed rollout still brings its release to the devices it had not reached; this newer
    # rollout supersedes that, so the older release does not arrive after it.
    DeviceDeployment.objects.filter(
        device__in=targets.values("pk"), state__in=_INSTALL_STATES, rollout__status=RolloutStatus.COMPLETED
    ).update(state=DeploymentState.CANCELLED, state_changed_at=now)
    targeted = _insert_pending(rollout=rollout, ring=ring, targets=targets, now=now)
    # The stage's devices that this rollout has still not targeted are the skipped ones. Each filter
    # looks up busy last, so the lookup runs only for the eligible ones left (busy or current).
    skipped = candidates.aggregate(
        revoked=Count("pk", filter=~usable),
        incompatible=Count("pk", filter=usable & ~eligible),
        busy=Count("pk", filter=eligible & Q(busy)),
        current=Count("pk", filter=eligible & Q(app_version=release.version) & ~Q(busy)),
    )
    counts: dict[str, Any] = {
        "ring": ring,
        "targeted": targeted,
        "skipped_incompatible": skipped["incompatible"],
        "skipped_busy": skipped["busy"],
        "skipped_current": skipped["current"],
        "skipped_revoked": skipped["revoked"],
    }
    if stage.get("cohort"):
        counts["cohort"] = stage["cohort"]
    if stage.get("region"):
        counts["region"] = stage["region"]
    return counts


def _lock_stage_deploys() -> None:
    """Serialise stage deploys for the rest of the transaction.

    Two rollouts deploying overlapping devices at once would each miss the other's uncommitted
    deployments in their busy check, and both claim a device. Locking every candidate device row
    prevents that at the cost of a row lock per device (700,000 for a large ring); this one
    transaction-scoped advisory lock queues whole deploys instead. A deploy's statements all run
    after the previous deploy committed, so under READ COMMITTED its busy check sees those
    deployments. SQLite (the embedded default) already runs write transactions one at a time
    (IMMEDIATE mode)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_STAGE_DEPLOY_LOCK])


def _live_elsewhere(rollout: Rollout) -> Exists:
    """Whether the device (the outer query's row) is still live in another active or paused rollout.

    Those rollouts are few and named by id, so the database reads just their deployments by index
    rather than every deployment ever made. Under the stage-deploy lock the list is complete: a
    rollout becomes active only by starting, which deploys its first stage under the same lock."""
    live = Rollout.objects.filter(status__in=(RolloutStatus.ACTIVE, RolloutStatus.PAUSED)).exclude(
        pk=rollout.pk
    )
    live_ids = list(live.values_list("pk", flat=True))
    return Exists(
        DeviceDeployment.objects.filter(
            device=OuterRef("pk"), rollout__in=live_ids, state__in=LIVE_DEPLOYMENT_STATES
        )
    )


def _insert_pending(*, rollout: Rollout, ring: str, targets: QuerySet[Device], now: dt.datetime) -> int:
    """INSERT ... SELECT a pending deployment of `rollout` for each of `targets`; how many.

    The deployment records the version the device ran before (from_version). With waves only the
    first wave, the first devices in id order, may install now; the periodic release brings the
    others (_release_due_wave, in the same order)."""
    released: Any = Value(now)
    if rollout.waves:
        wave = Window(RowNumber(), order_by=F("pk").asc())
        released = Case(When(LessThanOrEqual(wave, first_wave(rollout.waves)), then=Value(now)), default=None)
    # Column by column what the model's defaults would write; the SELECT follows this order.
    columns: dict[str, Any] = {
        "rollout": Value(rollout.pk),
        "device": F("pk"),
        "ring": Value(ring),
        "state": Value(DeploymentState.PENDING),
        "from_version": F("app_version"),
        "attempts": Value(0),
        "released_at": released,
        "last_error": Value(""),
        "diagnostics": Value(""),
        "created_at": Value(now),
        "state_changed_at": Value(now),
    }
    rows = targets.annotate(**{f"new_{name}": value for name, value in columns.items()}).values_list(
        *(f"new_{name}" for name in columns)
    )
    select, params = rows.query.sql_with_params()
    quote = connection.ops.quote_name
    column_of = {field.name: field.column for field in DeviceDeployment._meta.concrete_fields if field.column}
    names = ", ".join(quote(column_of[name]) for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(DeviceDeployment._meta.db_table)} ({names}) {select}", params)
        return cursor.rowcount


def deployed_sentence(rollout: Rollout, deployed: dict[str, Any]) -> str:
    where = f"cohort {deployed['cohort']}" if deployed.get("cohort") else deployed["ring"]
    sentence = f"Deploying {rollout.release.version} to {deployed['targeted']} devices of {where}"
    skipped = []
    if deployed["skipped_incompatible"]:
        skipped.append(f"{deployed['skipped_incompatible']} with an unsupported hardware variant")
    if deployed["skipped_busy"]:
        skipped.append(f"{deployed['skipped_busy']} busy in another rollout")
    if deployed.get("skipped_revoked"):
        skipped.append(f"{deployed['skipped_revoked']} with a revoked credential")
    if deployed.get("skipped_current"):
        skipped.append(f"{deployed['skipped_current']} already on {rollout.release.version}")
    return f"{sentence}; skipped {' and '.join(skipped)}." if skipped else f"{sentence}."


def deployments_roll_back(*, rollout: Rollout, now: dt.datetime) -> tuple[int, int]:
    """A rolled-back rollout's deployments: devices that received the release go back to the
    previous stable one (rolling_back), devices that had not started are cancelled. The two counts."""
    deployments = DeviceDeployment.objects.filter(rollout=rollout)
    # Pending ones first: a device that starts downloading meanwhile is then rolled back by the
    # second UPDATE, instead of slipping between the two and staying on downloading.
    cancelled = deployments.filter(state=DeploymentState.PENDING).update(
        state=DeploymentState.CANCELLED, state_changed_at=now
    )
    rolling_back = deployments.filter(
        state__in=(DeploymentState.DOWNLOADING, DeploymentState.VERIFIED, DeploymentState.ACTIVATED)
    ).update(state=DeploymentState.ROLLING_BACK, rolling_back_at=now, state_changed_at=now)
    return rolling_back, cancelled


# --- Waves: a stage's devices told to install a few at a time ------------------------------------------

# Devices released more than this before their stage (re)started were released before a pause: the
# ramp starts again after a resume rather than owing them. The margin covers the moments between
# the first wave's release and the stage's start, which are written in the same transaction.
_RESTART_MARGIN = dt.timedelta(seconds=5)


def deployments_release_waves(now: dt.datetime | None = None) -> int:
    """Release the waves that are due in every active rollout with waves; the number of devices
    released. Safe to run twice or on two workers at once: each rollout is locked while its wave
    is counted and released, and a release only brings the count up to the schedule."""
    now = now or timezone.now()
    rollout_ids = (
        Rollout.objects.filter(status=RolloutStatus.ACTIVE, stage_started_at__isnull=False)
        .exclude(waves={})
        .values_list("pk", flat=True)
    )
    return sum(_release_due_wave(rollout_id, now) for rollout_id in rollout_ids)


@transaction.atomic
def _release_due_wave(rollout_id: int, now: dt.datetime) -> int:
    """Bring the current stage's released devices up to the schedule, in device order, with one
    UPDATE. The schedule counts from when the stage (re)started: a resumed stage ramps up again."""
    rollout = (
        Rollout.objects.select_for_update(of=("self",))
        .select_related("release")
        .filter(pk=rollout_id, status=RolloutStatus.ACTIVE)
        .first()
    )
    if rollout is None or not rollout.waves or not rollout.current_ring:
        return 0
    minute = wave_minute(rollout, now)
    if minute is None:
        return 0
    assert rollout.stage_started_at is not None
    earlier = rollout.stage_started_at - _RESTART_MARGIN
    stage = DeviceDeployment.objects.filter(rollout=rollout, ring=rollout.current_ring)
    counts = stage.aggregate(
        targeted=Count("id"),
        released=Count("id", filter=Q(released_at__isnull=False)),
        # A retried deployment's released_at moved to its retry; its first download says when it began.
        before=Count("id", filter=Q(released_at__lt=earlier) | Q(downloading_at__lt=earlier)),
    )
    scheduled = counts["before"] + waves_released_by(
        rollout.waves, minute, counts["targeted"] - counts["before"]
    )
    due = scheduled - counts["released"]
    if due <= 0:
        return 0
    waiting = stage.filter(state=DeploymentState.PENDING, released_at__isnull=True)
    next_wave = waiting.order_by("device_id").values("pk")[:due]
    # The released_at condition is checked again on the locked rows: a row released meanwhile stays.
    released = waiting.filter(pk__in=next_wave).update(released_at=now)
    if released:
        total = counts["released"] + released
        # In the audit log, not in the rollout's timeline: a wave a minute would drown its transitions.
        audit_record(
            actor=None,
            action="WAVE_RELEASED",
            obj=rollout,
            reason=(
                f"Wave {minute + 1} of {rollout.current_ring}: {released:,} more "
                f"device{'s' if released != 1 else ''} told to install "
                f"{rollout.release.version} ({total:,} of {counts['targeted']:,} released)."
            ),
            changes={"after": {"ring": rollout.current_ring, "wave": minute + 1, "released": total}},
        )
    return released


# --- devices that join after a stage was deployed ---------------------------------------------------

# Rollouts whose deployed stages a joining device catches up with (a completed one still brings
# its release to the devices of its rings, see _STEERING_STATUSES).
_JOINABLE_STATUSES = (RolloutStatus.ACTIVE, RolloutStatus.PAUSED, RolloutStatus.COMPLETED)
AUDIT_JOINED = "DEPLOY_JOINED"


def _stage_covering(rollout: Rollout, device: Device) -> dict | None:
    """The first stage deployed so far (up to the current ring) that names the device (in its region,
    for a regional stage)."""
    rings = rollout.ring_names
    if rollout.current_ring not in rings:
        return None
    for stage in rollout.stages[: rings.index(rollout.current_ring) + 1]:
        if stage.get("region") and stage["region"] != device.region:
            continue
        if stage.get("cohort"):
            if device.memberships.filter(cohort__name=stage["cohort"]).exists():
                return stage
        elif device.ring in (stage.get("rings") or [stage["ring"]]):
            return stage
    return None


def _supports(release: Release, device: Device) -> bool:
    supported = set(release.compatible_variants.values_list("pk", flat=True))
    return not supported or device.variant_id in supported


def deploy_to_joined_device(*, device: Device, reason: str) -> DeviceDeployment | None:
    """A device that joined after stages were deployed gets the release its ring should run: a
    pending deployment in the newest rollout (active, paused or completed) that supports its
    variant and whose deployed stages name it, through deploy_stage's own checks. Nothing when
    that rollout already has it, it is busy elsewhere, or it already runs the release."""
    with transaction.atomic():
        device = Device.objects.get(pk=device.pk)
        rollouts = (
            Rollout.objects.filter(status__in=_JOINABLE_STATUSES, current_ring__isnull=False)
            .select_related("release")
            .order_by("-started_at", "-id")
        )
        for rollout in rollouts:
            stage = _stage_covering(rollout, device)
            if stage is None or not _supports(rollout.release, device):
                continue
            deployed = deploy_stage(rollout=rollout, stage=stage, only=device)
            deployment = DeviceDeployment.objects.filter(rollout=rollout, device=device).first()
            if deployed["targeted"] and deployment is not None:
                audit_record(
                    actor=None,
                    action=AUDIT_JOINED,
                    obj=device,
                    rollout=rollout,
                    to_ring=deployment.ring,
                    reason=f"{device.device_id} {reason} after {deployment.ring} was deployed: "
                    f"it gets {rollout.release.version} too.",
                    changes={"deployments": deployed},
                )
                return deployment
            return None
    return None


def on_device_joined(sender, *, device: Device, reason: str, **kwargs) -> None:
    """The receiver of devices.signals.device_joined."""
    deploy_to_joined_device(device=device, reason=reason)
