"""Reads of rollouts: what the gates judge (the current ring's devices that run the release), the
blast radius, and devices shown with their deployments."""

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from devices.models import Device
from rollouts.choices import EXPOSED_STATES, DeploymentState, IncidentSeverity, IncidentStatus
from rollouts.fleet_release import stage_devices
from rollouts.gates import (
    DEFAULT_MIN_INSTALLED_SHARE,
    BakeClock,
    Baseline,
    GateConfig,
    InstallProgress,
    Signals,
    custom_metric_names,
)
from rollouts.models import DeviceDeployment, Incident, Rollout
from rollouts.waves import wave_minute, waves_sentence
from telemetry.health import RingHealth
from telemetry.rollups import Targeting
from telemetry.selectors import (
    SeriesPoint,
    baseline_health,
    previous_release_health,
    reports_version_since_targeted,
    rollout_health,
    rollout_series,
    site_baseline_devices,
)


def newest_targetings(
    devices: Collection[int], versions: Collection[str]
) -> dict[tuple[int, str], Targeting]:
    """For health rollups: each (device, version) pair's newest deployment by a rollout of that
    version, as the rollout and stage it counts for. One query, served by the deployment's device
    index; a device has a deployment or two per version at most."""
    rows = (
        DeviceDeployment.objects.filter(device_id__in=devices, rollout__release__version__in=versions)
        .order_by("created_at", "id")
        .values_list("device_id", "rollout__release__version", "rollout_id", "ring", "created_at")
    )
    return {(device, version): Targeting(rollout, stage, at) for device, version, rollout, stage, at in rows}


def stage_health(
    rollout: Rollout, ring: str, *, config: GateConfig, now: dt.datetime
) -> tuple[RingHealth, Signals]:
    """What a judgement reads of a stage: its health and its other signals, the stage's
    deployments counted once for both."""
    by_state = stage_state_counts(rollout, ring)
    expected = _expected_devices(rollout, ring, config, now, activated=by_state[DeploymentState.ACTIVATED])
    health = rollout_ring_health(rollout, ring, config=config, now=now, expected_devices=expected)
    signals = rollout_signals(
        rollout, ring, config=config, now=now, ring_expected=expected, by_state=by_state
    )
    return health, signals


def rollout_ring_health(
    rollout: Rollout,
    ring: str,
    *,
    config: GateConfig | None = None,
    now: dt.datetime | None = None,
    window_minutes: int | None = None,
    spread: bool = False,
    expected_devices: int | None = None,
) -> RingHealth:
    """Health of the devices a rollout targeted in `ring`, from the checks of its version received
    after this rollout targeted each device: an earlier rollout of the same version (rolled back,
    then tried again) says nothing about this one. Not after the device's `activated` report:
    under load that report can trail the device's checks by a minute, and the checks already
    say which version the device runs.

    Devices that activated the release are expected to report; those that activated within the
    grace period have not had the time to, so they are not counted as silent yet.

    `config` is the rollout's parsed gate_config, for a caller that already holds it; the custom
    metrics its gates name are averaged too. Over the plan's window unless `window_minutes`
    says otherwise; `spread` adds the per-device statistics a baseline comparison reads;
    `expected_devices`, when the caller has counted them for the same moment, saves the count."""
    now = now or timezone.now()
    config = config or GateConfig.from_dict(rollout.gate_config)
    expected = (
        expected_devices if expected_devices is not None else _expected_devices(rollout, ring, config, now)
    )
    return rollout_health(
        rollout_id=rollout.pk,
        stage=ring,
        version=rollout.release.version,
        window_minutes=window_minutes or config.window_minutes,
        expected_devices=expected,
        now=now,
        spread=spread,
        metrics=custom_metric_names(config),
    )


# A stage of more devices than this spans most sites of a fleet whose sites mix rings: it is compared
# with every device of the fleet off the release, read from the rollups. A smaller stage (a pilot at
# a few hospitals) is compared with the devices at its own sites, so that an outage at one of them
# shows on both sides; those are read from their raw checks, so only while they are few.
SITE_BASELINE_MAX_STAGE = 5_000
SITE_BASELINE_MAX_DEVICES = 20_000


def _expected_devices(
    rollout: Rollout, ring: str, config: GateConfig, now: dt.datetime, *, activated: int | None = None
) -> int:
    """The stage's devices activated longer than the reporting grace ago. From `activated`, the
    stage's activated count when the caller has it, less those activated within the grace: a
    short range at the end of the (rollout, ring, state, activated_at) index."""
    deployments = DeviceDeployment.objects.filter(rollout=rollout, ring=ring, state=DeploymentState.ACTIVATED)
    grace_began = now - dt.timedelta(seconds=config.reporting_grace_seconds)
    if activated is None:
        return deployments.filter(activated_at__lte=grace_began).count()
    return activated - deployments.filter(activated_at__gt=grace_began).count()


def rollout_baseline(
    rollout: Rollout, ring: str, *, config: GateConfig, now: dt.datetime, ring_expected: int | None = None
) -> Baseline | None:
    """The devices still on the previous release (at the stage's sites for a small stage, see
    SITE_BASELINE_MAX_STAGE), over the plan's window and over its last `baseline_window_minutes`
    (with the ring over that slice); None when the plan compares nothing."""
    if not config.baseline_comparison:
        return None
    version = rollout.release.version
    metrics = custom_metric_names(config)
    local = _site_baseline(rollout, ring, config=config, now=now)

    def previous_release(window_minutes: int, *, spread: bool) -> RingHealth:
        if local is None:
            return previous_release_health(
                version=version,
                heard_within_minutes=config.unreachable_after_minutes,
                window_minutes=window_minutes,
                now=now,
                spread=spread,
                metrics=metrics,
            )
        devices, expected = local
        return baseline_health(
            devices,
            version=version,
            expected_devices=expected,
            window_minutes=window_minutes,
            now=now,
            spread=spread,
            metrics=metrics,
        )

    recent = config.baseline_window_minutes
    # Only the last slice is compared device by device (rollouts.baseline); the window shows the
    # figures a failing gate is set beside.
    return Baseline(
        window=previous_release(config.window_minutes, spread=False),
        recent=previous_release(recent, spread=True),
        ring_recent=rollout_ring_health(
            rollout,
            ring,
            config=config,
            now=now,
            window_minutes=recent,
            spread=True,
            expected_devices=ring_expected,
        ),
    )


def _site_baseline(
    rollout: Rollout, ring: str, *, config: GateConfig, now: dt.datetime
) -> tuple[QuerySet[Device], int] | None:
    """The baseline devices at the sites of a small stage and how many they are, when at least
    `baseline_min_sample` and at most SITE_BASELINE_MAX_DEVICES of them were heard from; None: the
    fleet's baseline."""
    deployments = DeviceDeployment.objects.filter(rollout=rollout, ring=ring)
    # Counted no further than the limit: a large stage costs no more than a small one here.
    if deployments.order_by()[: SITE_BASELINE_MAX_STAGE + 1].count() > SITE_BASELINE_MAX_STAGE:
        return None
    sites = list(deployments.order_by().values_list("device__site", flat=True).distinct())
    devices = site_baseline_devices(
        version=rollout.release.version,
        sites=sites,
        heard_within_minutes=config.unreachable_after_minutes,
        now=now,
    )
    count = devices.count()
    if not config.baseline_min_sample <= count <= SITE_BASELINE_MAX_DEVICES:
        return None
    return devices, count


def rollout_signals(
    rollout: Rollout,
    ring: str,
    *,
    config: GateConfig | None = None,
    now: dt.datetime | None = None,
    ring_expected: int | None = None,
    by_state: dict[str, int] | None = None,
) -> Signals:
    """Deployment failures in the ring (002 C8), open Sev1 incidents on the release, how much of
    the stage runs the release and the stage's bake. Only a failure the plan no longer retries
    counts; a deployment waiting for its retry has been tried, so it counts among the exposed.
    `by_state` and `ring_expected`: the stage's counts, when the caller has them for this moment."""
    by_state = by_state or stage_state_counts(rollout, ring)
    retrying = DeviceDeployment.objects.filter(
        rollout=rollout, ring=ring, state=DeploymentState.PENDING, attempts__gt=0
    ).count()
    exposed = (
        sum(by_state.values())
        - by_state[DeploymentState.PENDING]
        - by_state[DeploymentState.CANCELLED]
        + retrying
    )
    failed = by_state[DeploymentState.FAILED] + by_state[DeploymentState.ROLLED_BACK]
    sev1 = Incident.objects.filter(
        release=rollout.release, severity=IncidentSeverity.SEV1, status=IncidentStatus.OPEN
    ).values_list("title", flat=True)
    now = now or timezone.now()
    config = config or GateConfig.from_dict(rollout.gate_config)
    return Signals(
        deployment_failure_rate=failed / exposed if exposed else None,
        open_sev1_incidents=tuple(sev1),
        install=rollout_install_progress(rollout, ring, config=config, now=now, by_state=by_state),
        bake=rollout_bake_clock(rollout, ring, now=now),
        baseline=rollout_baseline(rollout, ring, config=config, now=now, ring_expected=ring_expected),
    )


def stage_state_counts(rollout: Rollout, ring: str) -> dict[str, int]:
    """The stage's deployments by state, every state present: one grouped count over the
    (rollout, ring, state, activated_at) index, without reading a row."""
    counts = dict.fromkeys(DeploymentState.values, 0)
    rows = (
        DeviceDeployment.objects.filter(rollout=rollout, ring=ring)
        .order_by()
        .values_list("state")
        .annotate(count=Count("*"))
    )
    counts.update(rows)
    return counts


# Deployments neither installed for sure nor withdrawn: whether they run the release is read from
# their devices' checks. Few once a stage has installed, so a large stage costs its counts only.
_UNSETTLED_STATES = [
    state
    for state in DeploymentState.values
    if state not in (DeploymentState.ACTIVATED, DeploymentState.CANCELLED)
]


def rollout_install_progress(
    rollout: Rollout,
    ring: str,
    *,
    config: GateConfig | None = None,
    now: dt.datetime | None = None,
    by_state: dict[str, int] | None = None,
) -> InstallProgress:
    """How much of the stage `ring` runs the release: the counts of its deployments by state (or
    `by_state`, when the caller has them), the deployments not yet activated, and the devices of
    its rings the release does not support.

    A device runs the release once its deployment is activated, or once its newest health check is
    of the release's version, sent since the stage targeted it (devices that report health only).
    One that does not and has been silent for longer than the plan's `unreachable_after_minutes`
    (or never spoke since it was targeted that long ago) is unreachable."""
    now = now or timezone.now()
    config = config or GateConfig.from_dict(rollout.gate_config)
    by_state = by_state or stage_state_counts(rollout, ring)
    version = rollout.release.version
    silent_since = now - dt.timedelta(minutes=config.unreachable_after_minutes)
    silent = Q(device__last_heartbeat__lt=silent_since) | Q(
        device__last_heartbeat__isnull=True, created_at__lt=silent_since
    )
    unsettled = (
        DeviceDeployment.objects.filter(rollout=rollout, ring=ring, state__in=_UNSETTLED_STATES)
        .annotate(
            runs_release=reports_version_since_targeted(rollout_id=rollout.pk, stage=ring, version=version)
        )
        .aggregate(
            reported=Count("id", filter=Q(runs_release=True)),
            unreachable=Count("id", filter=Q(runs_release=False) & silent),
        )
    )
    stage = rollout.stage(ring)
    return InstallProgress(
        version=version,
        targeted=sum(by_state.values()) - by_state[DeploymentState.CANCELLED],
        installed=by_state[DeploymentState.ACTIVATED] + unsettled["reported"],
        unreachable=unsettled["unreachable"],
        incompatible=_incompatible_devices(rollout, stage),
        min_share=stage.get("min_installed_share", DEFAULT_MIN_INSTALLED_SHARE),
    )


def _incompatible_devices(rollout: Rollout, stage: dict) -> int:
    """Devices the stage would deploy to but whose hardware variant the release does not support
    (a release that names no variant supports every one)."""
    supported = rollout.release.compatible_variants.values("pk")
    devices = stage_devices(stage)
    # One query: the subquery of supported variants runs inside it, EXISTS answering "any at all".
    return devices.filter(Exists(supported)).exclude(variant__in=supported).values("pk").distinct().count()


def rollout_bake_clock(rollout: Rollout, ring: str, *, now: dt.datetime | None = None) -> BakeClock:
    """The bake of the stage `ring`: it runs from `bake_started_at`, when the stage's installed
    share was first met; until then the whole bake is still ahead."""
    started_at = rollout.bake_started_at if rollout.current_ring == ring else None
    return BakeClock(
        ring=ring,
        minutes=rollout.stage(ring).get("bake_minutes", 0),
        started_at=started_at,
        now=now or timezone.now(),
    )


def rollout_health_series(
    rollout: Rollout, *, ring: str | None, minutes: int, now: dt.datetime | None = None
) -> list[SeriesPoint]:
    """Per-minute health of the devices the rollout deployed in `ring` (every ring when None),
    from their checks of its version, with the custom metrics its gates name: the chart shows
    what the gates judge."""
    return rollout_series(
        rollout_id=rollout.pk,
        stage=ring,
        version=rollout.release.version,
        minutes=minutes,
        now=now or timezone.now(),
        metrics=custom_metric_names(GateConfig.from_dict(rollout.gate_config)),
    )


# --- the blast radius ---


@dataclass(frozen=True)
class DeploymentSummary:
    """A rollout's deployments by state and by ring (targeted and exposed devices), and the fleet's
    size: what the API's detail, the portal's blast radius card and the live updates show."""

    by_state: dict[str, int]
    by_ring: dict[str, dict[str, int]]
    fleet: int
    # Pending again after a failed try that the plan retries: the release reached them already.
    retrying: int = 0

    @property
    def exposed(self) -> int:
        return sum(self.by_state[state] for state in EXPOSED_STATES) + self.retrying

    @property
    def targeted(self) -> int:
        return sum(self.by_state.values())

    @property
    def spared(self) -> int:
        return max(self.fleet - self.exposed, 0)

    @property
    def exposed_share(self) -> float:
        return round(100 * self.exposed / self.fleet, 1) if self.fleet else 0

    @property
    def spared_share(self) -> float:
        return round(100 * self.spared / self.fleet, 1) if self.fleet else 0

    def blast_radius(self) -> dict[str, int]:
        return {
            "exposed": self.exposed,
            "targeted": self.targeted,
            "fleet": self.fleet,
            "spared": self.spared,
        }


def wave_progress(
    rollout: Rollout, summary: DeploymentSummary, *, now: dt.datetime | None = None
) -> dict[str, Any] | None:
    """How far the waves of the current ring have got (from the summary's counts, no query), or
    None when the rollout has no waves or no ring deployed."""
    ring = rollout.current_ring
    if not rollout.waves or not ring or ring not in summary.by_ring:
        return None
    counts = summary.by_ring[ring]
    released, targeted = counts["released"], counts["targeted"]
    minute = wave_minute(rollout, now or timezone.now())
    return {
        "ring": ring,
        "wave": minute + 1 if minute is not None else None,
        "released": released,
        "targeted": targeted,
        "sentence": waves_sentence(rollout, released=released, targeted=targeted, now=now),
    }


def rollout_retries_waiting(rollout: Rollout) -> dict[str, Any]:
    """The rollout's failed deployments waiting for their retry, and when the next one is due (one
    aggregate query)."""
    return DeviceDeployment.objects.filter(
        rollout=rollout, state=DeploymentState.PENDING, failed_at__isnull=False
    ).aggregate(waiting=Count("id"), next_at=Min("released_at"))


def rollout_deployment_summary(rollout: Rollout) -> DeploymentSummary:
    """One grouped query over the rollout's deployments, and the fleet count. Every ring of the
    rollout is listed, with zeros until it is deployed."""
    rows = (
        DeviceDeployment.objects.filter(rollout=rollout)
        .order_by()
        .values_list("ring", "state")
        .annotate(
            count=Count("id"),
            released=Count("id", filter=Q(released_at__isnull=False)),
            retrying=Count("id", filter=Q(state=DeploymentState.PENDING, attempts__gt=0)),
        )
    )
    by_state = dict.fromkeys(DeploymentState.values, 0)
    by_ring = {ring: {"targeted": 0, "exposed": 0, "released": 0} for ring in rollout.ring_names}
    retrying_total = 0
    for ring, state, count, released, retrying in rows:
        by_state[state] += count
        retrying_total += retrying
        ring_counts = by_ring.setdefault(ring, {"targeted": 0, "exposed": 0, "released": 0})
        ring_counts["targeted"] += count
        # Told to install (its wave came); without waves, every device of a deployed ring.
        ring_counts["released"] += released
        if state in EXPOSED_STATES:
            ring_counts["exposed"] += count
        ring_counts["exposed"] += retrying
    return DeploymentSummary(
        by_state=by_state, by_ring=by_ring, fleet=Device.objects.count(), retrying=retrying_total
    )


# --- devices with their deployments (the people's device list and detail) ---


def _latest_deployments() -> QuerySet[DeviceDeployment]:
    """A device's deployments, newest first (uses the deployment's device_id index)."""
    return DeviceDeployment.objects.filter(device=OuterRef("pk")).order_by("-created_at", "-id")


def device_list() -> QuerySet[Device]:
    """Devices for the list: variant joined, and the state of each one's newest deployment."""
    return Device.objects.select_related("variant").annotate(
        deployment_state=Subquery(_latest_deployments().values("state")[:1]),
        deployment_rollout_id=Subquery(_latest_deployments().values("rollout__rollout_id")[:1]),
    )


def device_latest_deployment(device: Device) -> DeviceDeployment | None:
    """The device's newest deployment, whatever its state, with its rollout and release."""
    return (
        DeviceDeployment.objects.filter(device=device)
        .select_related("rollout__release")
        .order_by("-created_at", "-id")
        .first()
    )
