"""The fleet's release: which release is current for each hardware variant, where a rollback takes
a device, whether a plan's devices already run a release, and a fleet split over several versions.

The current release is derived, never stored: for a variant it is the release of the most recently
completed rollout that supports the variant (a release listing no variants supports every one).
Before any rollout completed it is the newest release marked stable that supports it. Rolling a
completed rollout back ends its completion, so the release before it is current again.
"""

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from devices.models import Device, HardwareVariant
from rollouts.choices import DeploymentState, RolloutStatus
from rollouts.models import DeviceDeployment, Release, Rollout

# Rollouts whose presence explains devices of one variant running several versions.
_SPREADING_STATUSES = (RolloutStatus.ACTIVE, RolloutStatus.PAUSED)
# Deployments that a rollback sends back (or has sent back) to an earlier release.
_RETURNING_STATES = (
    DeploymentState.DOWNLOADING,
    DeploymentState.VERIFIED,
    DeploymentState.ACTIVATED,
    DeploymentState.ROLLING_BACK,
)
# How the page and the API name the devices that have no hardware variant.
NO_VARIANT = "no variant"


@dataclass(frozen=True)
class CurrentRelease:
    """A variant's current release, and the completed rollout that made it current (None when it
    is current because it is marked stable and nothing has completed since)."""

    release: Release
    rollout: Rollout | None


def _supporting(variant_id: int | None, prefix: str = "") -> Q:
    """Releases (or, with prefix "release__", rollouts of releases) that a device of the variant runs."""
    supports = Q(**{f"{prefix}compatible_variants__isnull": True})
    if variant_id is not None:
        supports |= Q(**{f"{prefix}compatible_variants": variant_id})
    return supports


def last_completion(variant_id: int | None, *, excluding: Release | None = None) -> Rollout | None:
    """The most recently completed rollout whose release supports the variant (not of `excluding`)."""
    rollouts = Rollout.objects.filter(_supporting(variant_id, "release__"), status=RolloutStatus.COMPLETED)
    if excluding is not None:
        rollouts = rollouts.exclude(release=excluding)
    return rollouts.select_related("release").order_by("-finished_at", "-id").first()


def current_release(variant_id: int | None) -> CurrentRelease | None:
    """The variant's current release (None for a variant that no completed or stable release supports)."""
    completed = last_completion(variant_id)
    if completed is not None:
        return CurrentRelease(release=completed.release, rollout=completed)
    stable = (
        Release.objects.filter(_supporting(variant_id), is_stable=True).order_by("-created_at", "-id").first()
    )
    return CurrentRelease(release=stable, rollout=None) if stable else None


def current_releases() -> dict[str, CurrentRelease | None]:
    """The current release of every variant the fleet's devices have, by variant name
    (NO_VARIANT for devices without one), in name order."""
    variants: dict[str, int | None] = dict(
        HardwareVariant.objects.filter(device__isnull=False).distinct().values_list("name", "pk")
    )
    if Device.objects.filter(variant__isnull=True).exists():
        variants[NO_VARIANT] = None
    return {name: current_release(variants[name]) for name in sorted(variants)}


def current_for(release: Release, currents: dict[str, CurrentRelease | None]) -> list[str]:
    """The variants (of `current_releases()`) whose current release is `release`."""
    return [name for name, current in currents.items() if current and current.release.pk == release.pk]


def rollback_target(
    *, release: Release, variant_id: int | None, from_version: str
) -> tuple[Release | None, str]:
    """Where a device of the variant goes when a rollout of `release` is rolled back, and that
    version: the fleet's current release for its variant (the last completed rollout of another
    release), else the release's `previous_release`, else the version the device ran before
    (`from_version`; then the release is None)."""
    completed = last_completion(variant_id, excluding=release)
    target = completed.release if completed else release.previous_release
    return target, target.version if target else from_version


# --- a plan's devices that already run a release ------------------------------------------------


def stage_devices(stage: dict) -> QuerySet[Device]:
    """The devices a plan stage names: its cohort's members, else the devices of its ring(s); only
    those of its region when it names one."""
    if stage.get("cohort"):
        devices = Device.objects.filter(memberships__cohort__name=stage["cohort"])
    else:
        devices = Device.objects.filter(ring__in=stage.get("rings") or [stage["ring"]])
    return devices.filter(region=stage["region"]) if stage.get("region") else devices


def already_running_refusal(release: Release, stages: list[dict]) -> str | None:
    """Why a rollout of `release` over these stages would change nothing, as a sentence: every
    device they target that supports the release already runs it. None when there is work to do
    (or when they target no device the release supports; the deployment says so)."""
    targeted = Device.objects.none()
    for stage in stages:
        targeted = targeted | stage_devices(stage)
    supported = list(release.compatible_variants.values_list("pk", flat=True))
    if supported:
        targeted = targeted.filter(variant_id__in=supported)
    counts = targeted.aggregate(
        total=Count("pk", distinct=True),
        behind=Count("pk", distinct=True, filter=~Q(app_version=release.version)),
    )
    if not counts["total"] or counts["behind"]:
        return None
    completed = Rollout.objects.filter(release=release, status=RolloutStatus.COMPLETED).order_by(
        "-finished_at"
    )
    last = completed.first()
    where = (
        f" (completed in {last.rollout_id} on {last.finished_at:%Y-%m-%d})"
        if last and last.finished_at
        else ""
    )
    return (
        f"Every device this plan targets already runs {release.version}{where}; there is nothing to roll out."
    )


# --- a split fleet ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitVariant:
    """Devices of one variant on several versions, with no active or paused rollout to explain it."""

    variant: str
    versions: list[tuple[str, int]]  # (version, devices), most devices first

    @property
    def sentence(self) -> str:
        counts = ", ".join(
            f"{count:,} device{'s' if count != 1 else ''} on {version}" for version, count in self.versions
        )
        return f"Split fleet: {counts} (variant {self.variant}); no active rollout explains it."


def split_fleet() -> list[SplitVariant]:
    """Variants whose devices run several versions while no active or paused rollout of a release
    supporting them is under way. Devices that have not said which version they run are left out."""
    rows = (
        Device.objects.exclude(app_version="")
        .order_by()
        .values_list("variant_id", "variant__name", "app_version")
        .annotate(count=Count("id"))
    )
    by_variant: dict[int | None, tuple[str, list[tuple[str, int]]]] = {}
    for variant_id, name, version, count in rows:
        by_variant.setdefault(variant_id, (name or NO_VARIANT, []))[1].append((version, count))
    spreading = Rollout.objects.filter(status__in=_SPREADING_STATUSES)
    split = []
    for variant_id, (name, versions) in sorted(by_variant.items(), key=lambda item: item[1][0]):
        if len(versions) < 2 or spreading.filter(_supporting(variant_id, "release__")).exists():
            continue
        split.append(SplitVariant(variant=name, versions=sorted(versions, key=lambda row: (-row[1], row[0]))))
    return split


def rollback_versions(rollout: Rollout) -> list[str]:
    """The versions a rollback of `rollout` sends its devices to (those that received the release,
    or are rolling back): one per variant's target, so usually one; the release's previous release
    when no device received it.

    Asked variant by variant (the fleet has a handful), each an EXISTS that stops at the first
    returning device, instead of listing the distinct (variant, version) pairs of every
    deployment: a rollout's page reads this at any size. Only a variant with no release to go
    back to asks which versions its devices came from."""
    returning = DeviceDeployment.objects.filter(rollout=rollout, state__in=_RETURNING_STATES)
    release = rollout.release
    versions = set()
    variants = [*HardwareVariant.objects.values_list("pk", flat=True), None]
    for variant_id in variants:
        devices = returning.filter(device__variant_id=variant_id)
        if not devices.exists():
            continue
        target, version = rollback_target(release=release, variant_id=variant_id, from_version="")
        if target is not None:
            versions.add(version)
            continue
        versions.update(devices.order_by().values_list("from_version", flat=True).distinct())
    if not versions and (previous := release.previous_release):
        versions.add(previous.version)
    return sorted(version for version in versions if version)
