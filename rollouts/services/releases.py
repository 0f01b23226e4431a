"""The release catalogue: the only way releases change.

Every function is keyword-only, runs in one transaction and appends exactly one audit event for
the write it makes (none when a call changes nothing). The API, the admin and the management
commands all come through here, so the same rules apply whichever door a request used.
"""

import hashlib
import re
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from django.core.files import File
from django.db import IntegrityError, transaction

from devices.models import HardwareVariant
from rollouts.choices import RolloutStatus
from rollouts.models import Release
from saferoll.core.audit import Actor, actor_user, audit_record, diff_fields
from saferoll.core.errors import bad_input

# Audit actions of this module (the object type says they acted on a release).
ACTION_CREATE = "CREATE"
ACTION_UPDATE = "UPDATE"

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# Read uploads in 1 MiB pieces: an artifact can be a multi-gigabyte image.
CHUNK_SIZE = 1024 * 1024

RELEASE_EDITABLE_FIELDS = (
    "artifact_url",
    "size_bytes",
    "sha256",
    "signature",
    "compatible_variants",
    "notes",
    "is_stable",
    "previous_release",
)


def artifact_digest(file: File) -> tuple[int, str]:
    """Size in bytes and SHA-256 of a file, read in chunks so that large images never sit in memory."""
    digest = hashlib.sha256()
    size = 0
    for chunk in file.chunks(CHUNK_SIZE):
        digest.update(chunk)
        size += len(chunk)
    if hasattr(file, "seek"):
        file.seek(0)
    return size, digest.hexdigest()


def release_state(release: Release) -> dict[str, Any]:
    """What an audit event records of a release (JSON-ready)."""
    return {
        "version": release.version,
        "artifact": release.artifact.name or "",
        "artifact_url": release.artifact_url,
        "size_bytes": release.size_bytes,
        "sha256": release.sha256,
        "signature": release.signature,
        "compatible_variants": sorted(variant.name for variant in release.compatible_variants.all())
        if release.pk
        else [],
        "notes": release.notes,
        "is_stable": release.is_stable,
        "previous_release": previous.version if (previous := release.previous_release) else None,
    }


def normalize_sha256(value: str) -> str:
    value = (value or "").strip().lower()
    if value and not SHA256_PATTERN.match(value):
        raise bad_input("The SHA-256 must be 64 hexadecimal characters (0-9, a-f).", field="sha256")
    return value


def _variants(names: Iterable[str]) -> list[HardwareVariant]:
    """The variants with these names; names not known yet are created (a new hardware model)."""
    variants = []
    for raw in names:
        name = raw.strip()
        if not name:
            raise bad_input("A hardware variant name cannot be empty.", field="compatible_variants")
        variant, _ = HardwareVariant.objects.get_or_create(name=name)
        variants.append(variant)
    return variants


def _attach_artifact(release: Release, artifact: File) -> None:
    """Store the uploaded file and set size and SHA-256 from its bytes, checking any value given."""
    size, sha256 = artifact_digest(artifact)
    if release.sha256 and release.sha256 != sha256:
        raise bad_input(
            f"The uploaded artifact's SHA-256 is {sha256}, not the {release.sha256} given.", field="sha256"
        )
    if release.size_bytes is not None and release.size_bytes != size:
        raise bad_input(
            f"The uploaded artifact is {size} bytes, not the {release.size_bytes} given.", field="size_bytes"
        )
    release.size_bytes = size
    release.sha256 = sha256
    name = PurePath(artifact.name or "artifact.bin").name
    # The storage picks a free name, so two uploads never overwrite each other's file.
    release.artifact.save(f"{release.version}/{name}", artifact, save=False)


def _check_previous(release: Release, previous: Release | None) -> None:
    if previous is not None and release.pk is not None and previous.pk == release.pk:
        raise bad_input("A release cannot roll back to itself.", field="previous_release")


@transaction.atomic
def release_create(
    *,
    version: str,
    actor: Actor,
    artifact: File | None = None,
    artifact_url: str = "",
    size_bytes: int | None = None,
    sha256: str = "",
    signature: str = "",
    compatible_variants: Iterable[str] = (),
    notes: str = "",
    is_stable: bool = False,
    previous_release: Release | None = None,
) -> Release:
    """Add a release to the catalogue. With an uploaded `artifact`, its size and SHA-256 are
    computed from the bytes (and must match any values given)."""
    version = (version or "").strip()
    if not version:
        raise bad_input("A release needs a version.", field="version")
    if Release.objects.filter(version=version).exists():
        raise bad_input(f"A release with version {version} already exists.", field="version")
    if size_bytes is not None and size_bytes < 0:
        raise bad_input("The size cannot be negative.", field="size_bytes")
    release = Release(
        version=version,
        artifact_url=artifact_url or "",
        size_bytes=size_bytes,
        sha256=normalize_sha256(sha256),
        signature=signature or "",
        notes=notes or "",
        is_stable=is_stable,
        previous_release=previous_release,
        created_by=actor_user(actor),
    )
    if artifact is not None:
        _attach_artifact(release, artifact)
    try:
        # The check above gives the friendly answer; the unique index settles a concurrent create.
        with transaction.atomic():
            release.save()
    except IntegrityError:
        raise bad_input(f"A release with version {version} already exists.", field="version") from None
    release.compatible_variants.set(_variants(compatible_variants))
    audit_record(
        actor=actor, action=ACTION_CREATE, obj=release, changes=diff_fields({}, release_state(release))
    )
    return release


@transaction.atomic
def release_update(*, release: Release, actor: Actor, data: dict[str, Any], reason: str = "") -> Release:
    """Change what may change of a release; its version never does. `data` holds only the fields
    to change (`compatible_variants` as names, `previous_release` as a Release or None, `artifact`
    as an uploaded file)."""
    # Lock the row: two editors saving at once must not lose each other's change or its audit.
    release = Release.objects.select_for_update().get(pk=release.pk)
    if "version" in data and data["version"] != release.version:
        raise bad_input(
            f"The version of a release cannot be changed (it is {release.version}).", field="version"
        )
    unknown = set(data) - {*RELEASE_EDITABLE_FIELDS, "version", "artifact"}
    if unknown:
        raise bad_input(f"Unknown release field(s): {', '.join(sorted(unknown))}.")
    before = release_state(release)

    for field in ("artifact_url", "signature", "notes"):
        if field in data:
            setattr(release, field, data[field] or "")
    if "is_stable" in data:
        release.is_stable = bool(data["is_stable"])
    if "sha256" in data:
        release.sha256 = normalize_sha256(data["sha256"])
    if "size_bytes" in data:
        if data["size_bytes"] is not None and data["size_bytes"] < 0:
            raise bad_input("The size cannot be negative.", field="size_bytes")
        release.size_bytes = data["size_bytes"]
    if "previous_release" in data:
        _check_previous(release, data["previous_release"])
        release.previous_release = data["previous_release"]
    if data.get("artifact") is not None:
        # A new file brings its own size and digest; values given in the same call must match it.
        if "sha256" not in data:
            release.sha256 = ""
        if "size_bytes" not in data:
            release.size_bytes = None
        _attach_artifact(release, data["artifact"])
    release.save()
    if "compatible_variants" in data:
        release.compatible_variants.set(_variants(data["compatible_variants"]))

    changes = diff_fields(before, release_state(release))
    if changes:
        audit_record(actor=actor, action=ACTION_UPDATE, obj=release, changes=changes, reason=reason)
    return release


# --- what rollouts do to a release ---------------------------------------------------------------
# These write no audit event of their own: the rollout's COMPLETED or ROLLBACK event records the
# change (under "release" in its changes), in the same transaction.


def release_completed(*, release: Release) -> dict[str, Any]:
    """A rollout of the release completed: it is known good now, so mark it stable. What changed."""
    return _set_stable(release, True)


def release_completion_rolled_back(*, release: Release) -> dict[str, Any]:
    """A completed rollout of the release was rolled back: unless another completed rollout of it
    stands, it is no longer known good (and no longer the fleet's current release). What changed."""
    if release.rollouts.filter(status=RolloutStatus.COMPLETED).exists():
        return {"version": release.version, "is_stable": release.is_stable}
    return _set_stable(release, False)


def _set_stable(release: Release, stable: bool) -> dict[str, Any]:
    before = release.is_stable
    if before != stable:
        Release.objects.filter(pk=release.pk).update(is_stable=stable)
        release.is_stable = stable
        return {"version": release.version, "is_stable": {"before": before, "after": stable}}
    return {"version": release.version, "is_stable": stable}
