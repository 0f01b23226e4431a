"""Writes to devices and cohorts: enrollment, credentials, edits and cohort membership.

Every service is keyword-only and runs in one transaction; every change made by a person, or by a
device registering itself, writes exactly one audit event in that transaction. Bad input is
refused with saferoll.core.errors.ServiceRefused (field by field), a bad fleet key with PermissionDenied,
so the same rules hold for the API and the Django admin alike.
"""

import datetime as dt
import hmac
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from devices.choices import CohortKind, DeviceStatus
from devices.models import Cohort, CohortMembership, Device, HardwareVariant, hash_token, new_device_token
from devices.signals import cohort_members_adding, device_joined
from saferoll.core.audit import Actor, actor_user, audit_record, diff_fields
from saferoll.core.errors import ServiceRefused, invalid

DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,50}$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
# `/api/devices/enroll` is the enrollment endpoint, so a device of that name could never be addressed.
RESERVED_DEVICE_IDS = frozenset({"enroll"})

# Fields of a device that people may change through device_update.
DEVICE_EDITABLE_FIELDS = frozenset({"site", "region", "ring", "variant", "status", "status_reason"})
COHORT_EDITABLE_FIELDS = frozenset({"kind", "description"})

# An arbitrary constant: the PostgreSQL advisory lock that serialises ring assignment.
_RING_ASSIGNMENT_LOCK = 7_253_010_001


class AuditAction:
    """The `action` of the audit events written here."""

    ENROLL = "ENROLL"
    RE_ENROLL = "RE_ENROLL"
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    ROTATE_CREDENTIAL = "ROTATE_CREDENTIAL"
    REVOKE_CREDENTIAL = "REVOKE_CREDENTIAL"
    CHANGE_MEMBERS = "CHANGE_MEMBERS"


def announce_joined(device: Device, reason: str) -> None:
    """Tell the apps above, once the transaction commits, that the device joined (or rejoined):
    a rollout that already deployed its ring then gives it the release. A receiver's failure is
    logged, not raised: the device's own change has committed and stands."""
    transaction.on_commit(
        lambda: device_joined.send_robust(sender=Device, device=device, reason=reason), robust=True
    )


def device_actor(device_id: str) -> str:
    """The audit actor of a device acting for itself."""
    return f"device:{device_id}"


# --- validation ---------------------------------------------------------------------------------


def validate_device_id(value: str) -> None:
    if not isinstance(value, str) or not _DEVICE_ID_RE.match(value):
        raise ValidationError(
            "A device id is 1 to 50 characters of letters, digits, '.', '_', ':' or '-'.",
            code="invalid",
        )
    if value in RESERVED_DEVICE_IDS:
        raise ValidationError(f"'{value}' is reserved and cannot be a device id.", code="reserved")


def fleet_rings() -> list[str]:
    """The fleet's rings in rollout order (the keys of SAFEROLL_RING_SHARES)."""
    return list(settings.SAFEROLL_RING_SHARES)


def _validate_ring(ring: str) -> None:
    rings = fleet_rings()
    if ring not in rings:
        raise invalid({"ring": [f"Unknown ring '{ring}': the fleet's rings are {', '.join(rings)}."]})


def _validate_status(status: str) -> None:
    if status not in DeviceStatus.values:
        raise invalid(
            {"status": [f"Unknown status '{status}': use one of {', '.join(DeviceStatus.values)}."]}
        )


def _variant_named(name: str | None) -> HardwareVariant | None:
    """The hardware variant of that name, created when new; None for no variant."""
    if not name:
        return None
    max_length = HardwareVariant._meta.get_field("name").max_length
    if max_length is not None and len(name) > max_length:
        raise invalid({"variant": ["A variant name is at most 50 characters."]})
    # get_or_create retries the read when a concurrent insert of the same name wins the race.
    variant, _ = HardwareVariant.objects.get_or_create(name=name)
    return variant


def _device_snapshot(device: Device) -> dict[str, Any]:
    """The audited fields of a device (never its credential)."""
    return {
        "device_id": device.device_id,
        "ring": device.ring,
        "variant": device.variant.name if device.variant else None,
        "site": device.site,
        "region": device.region,
        "status": device.status,
        "status_reason": device.status_reason,
        "app_version": device.app_version,
        "base_image_version": device.base_image_version,
        "agent_version": device.agent_version,
    }


# --- ring assignment ------------------------------------------------------------------------------


def _lock_ring_assignment() -> None:
    """Serialise ring assignment for the rest of the transaction.

    Two enrollments that count the rings at the same moment would both pick the same most-starved
    ring; a transaction-scoped advisory lock makes each pick see the previous one, so the fleet
    matches its shares exactly. Enrollment happens once per device, so the queueing costs little.
    SQLite (the embedded default) already runs write transactions one at a time (IMMEDIATE mode).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_RING_ASSIGNMENT_LOCK])


def next_ring_assignment() -> str:
    """The ring furthest below its target share of the fleet once one more device joins.

    Deterministic: the same counts always give the same ring, ties going to the earlier ring.
    Call it with the ring-assignment lock held (see _lock_ring_assignment)."""
    shares = settings.SAFEROLL_RING_SHARES
    # order_by() drops Device's default ordering, which would otherwise split the GROUP BY.
    counts = dict(
        Device.objects.filter(ring__in=list(shares))
        .order_by()
        .values("ring")
        .annotate(n=Count("id"))
        .values_list("ring", "n")
    )
    total_after = sum(counts.values()) + 1
    return max(
        shares,
        key=lambda ring: (shares[ring] * total_after / 100 - counts.get(ring, 0), -list(shares).index(ring)),
    )


# --- enrollment and devices -------------------------------------------------------------------------


@transaction.atomic
def device_enroll(
    *,
    device_id: str,
    enrollment_key: str,
    ring: str | None = None,
    variant: str | None = None,
    site: str = "",
    region: str = "",
    version: str = "",
    base_image_version: str = "",
    agent_version: str = "",
    now: dt.datetime | None = None,
) -> tuple[Device, str]:
    """A device registers itself with the fleet key and gets a fresh token (returned once).

    A device that is already known keeps its ring (the server's is authoritative) and gets a new
    token; its old one stops working. A device whose credential an operator revoked cannot undo
    that with the fleet key: an operator has to rotate it."""
    expected = settings.SAFEROLL_ENROLLMENT_KEY.encode()
    if not hmac.compare_digest(enrollment_key.encode(), expected):
        raise PermissionDenied("The enrollment key is not valid for this fleet.")
    try:
        validate_device_id(device_id)
    except ValidationError as exc:
        raise invalid({"device_id": exc.messages}) from None
    if ring is not None:
        _validate_ring(ring)
    now = now or timezone.now()
    token = new_device_token()

    existing = Device.objects.select_for_update().filter(device_id=device_id).first()
    if existing is None:
        _lock_ring_assignment()
        device = Device(
            device_id=device_id,
            ring=ring or next_ring_assignment(),
            variant=_variant_named(variant),
            site=site,
            region=region,
            app_version=version,
            base_image_version=base_image_version,
            agent_version=agent_version,
            status=DeviceStatus.ONLINE,
            last_heartbeat=now,
            token_hash=hash_token(token),
            token_issued_at=now,
        )
        try:
            # A savepoint, so that losing a race with a concurrent enrollment of the same id
            # leaves the transaction usable and we re-enroll the winner's row instead.
            with transaction.atomic():
                device.save(force_insert=True)
        except IntegrityError:
            existing = Device.objects.select_for_update().get(device_id=device_id)
        else:
            audit_record(
                actor=device_actor(device_id),
                action=AuditAction.ENROLL,
                obj=device,
                reason="Enrolled with the fleet key.",
                changes=diff_fields({}, _device_snapshot(device)),
            )
            announce_joined(device, "enrolled")
            return device, token

    if existing.token_hash is None:
        raise PermissionDenied(
            "This device's credential was revoked; an operator must rotate it before it can check in again."
        )
    before = _device_snapshot(existing)
    # What the device says about itself is taken (its software versions); what people manage
    # (ring, site, region, variant) is only filled in when still blank.
    update_fields = ["token_hash", "token_issued_at", "status", "last_heartbeat"]
    existing.token_hash = hash_token(token)
    existing.token_issued_at = now
    existing.status = DeviceStatus.ONLINE if existing.status == DeviceStatus.OFFLINE else existing.status
    existing.last_heartbeat = now
    for field, value in (
        ("app_version", version),
        ("base_image_version", base_image_version),
        ("agent_version", agent_version),
    ):
        if value and getattr(existing, field) != value:
            setattr(existing, field, value)
            update_fields.append(field)
    for field, value in (("site", site), ("region", region)):
        if value and not getattr(existing, field):
            setattr(existing, field, value)
            update_fields.append(field)
    if variant and existing.variant_id is None:
        existing.variant = _variant_named(variant)
        update_fields.append("variant")
    existing.save(update_fields=update_fields)
    audit_record(
        actor=device_actor(device_id),
        action=AuditAction.RE_ENROLL,
        obj=existing,
        reason="Re-enrolled with the fleet key: a new credential was issued and the old one revoked.",
        changes=diff_fields(before, _device_snapshot(existing)),
    )
    announce_joined(existing, "re-enrolled")
    return existing, token


@transaction.atomic
def device_create(
    *,
    actor: Actor,
    device_id: str,
    ring: str | None = None,
    variant: str | None = None,
    site: str = "",
    region: str = "",
    app_version: str = "",
    base_image_version: str = "",
    agent_version: str = "",
    now: dt.datetime | None = None,
) -> tuple[Device, str]:
    """A person registers a device; its token is returned once and only its hash is kept."""
    try:
        validate_device_id(device_id)
    except ValidationError as exc:
        raise invalid({"device_id": exc.messages}) from None
    if ring:
        _validate_ring(ring)
    now = now or timezone.now()
    token = new_device_token()
    if Device.objects.filter(device_id=device_id).exists():
        raise invalid({"device_id": [f"A device with id '{device_id}' already exists."]})
    if not ring:
        _lock_ring_assignment()
        ring = next_ring_assignment()
    device = Device(
        device_id=device_id,
        ring=ring,
        variant=_variant_named(variant),
        site=site,
        region=region,
        app_version=app_version,
        base_image_version=base_image_version,
        agent_version=agent_version,
        # Offline until the device itself checks in.
        status=DeviceStatus.OFFLINE,
        token_hash=hash_token(token),
        token_issued_at=now,
    )
    try:
        with transaction.atomic():
            device.save(force_insert=True)
    except IntegrityError:
        raise invalid({"device_id": [f"A device with id '{device_id}' already exists."]}) from None
    audit_record(
        actor=actor,
        action=AuditAction.CREATE,
        obj=device,
        changes=diff_fields({}, _device_snapshot(device)),
    )
    announce_joined(device, "registered")
    return device, token


@transaction.atomic
def device_update(*, device: Device, actor: Actor, data: dict[str, Any], reason: str = "") -> Device:
    """Change what people manage about a device: site, region, ring, variant (by name), status
    and its reason. Audited with the before and after of what changed; nothing changed, no event."""
    unknown = set(data) - DEVICE_EDITABLE_FIELDS
    if unknown:
        raise invalid({field: ["This field cannot be changed."] for field in sorted(unknown)})
    if data.get("ring") is not None:
        _validate_ring(data["ring"])
    if data.get("status") is not None:
        _validate_status(data["status"])
    # Lock the row: heartbeats and deployment reports write other columns of it concurrently,
    # and the audited "before" must be what this update replaced.
    device = Device.objects.select_for_update(of=("self",)).select_related("variant").get(pk=device.pk)
    before = _device_snapshot(device)
    update_fields = []
    for field, value in data.items():
        if field == "variant":
            variant = _variant_named(value)
            if variant != device.variant:
                device.variant = variant
                update_fields.append("variant")
            continue
        if field in ("site", "region", "status_reason"):
            value = value or ""
        if value is None or getattr(device, field) == value:
            continue
        setattr(device, field, value)
        update_fields.append(field)
    if update_fields:
        device.save(update_fields=update_fields)
        audit_record(
            actor=actor,
            action=AuditAction.UPDATE,
            obj=device,
            reason=reason or data.get("status_reason") or "",
            changes=diff_fields(before, _device_snapshot(device)),
        )
        if "ring" in update_fields:
            announce_joined(device, f"moved to {device.ring}")
        elif "status" in update_fields and before["status"] == DeviceStatus.INVESTIGATE:
            announce_joined(device, "cleared from investigation")
    return device


@transaction.atomic
def device_rotate_credential(*, device: Device, actor: Actor, now: dt.datetime | None = None) -> str:
    """Issue a new token (returned once); the old one stops working at commit."""
    now = now or timezone.now()
    token = new_device_token()
    was_revoked = Device.objects.filter(pk=device.pk, token_hash__isnull=True).exists()
    # A plain update of the credential columns: nothing else of the row is read or written.
    Device.objects.filter(pk=device.pk).update(token_hash=hash_token(token), token_issued_at=now)
    device.token_hash, device.token_issued_at = hash_token(token), now
    audit_record(
        actor=actor,
        action=AuditAction.ROTATE_CREDENTIAL,
        obj=device,
        reason="A new device credential was issued; the previous one no longer works.",
    )
    if was_revoked:
        # Rollouts skip a device without a credential (it cannot check in); now it can again.
        announce_joined(device, "given a credential again")
    return token


@transaction.atomic
def device_revoke_credential(*, device: Device, actor: Actor) -> Device:
    """Remove the device's credential: it cannot check in until an operator rotates it.
    Revoking an already revoked credential changes nothing and records nothing."""
    revoked = Device.objects.filter(pk=device.pk, token_hash__isnull=False).update(
        token_hash=None, token_issued_at=None
    )
    device.token_hash, device.token_issued_at = None, None
    if revoked:
        audit_record(
            actor=actor,
            action=AuditAction.REVOKE_CREDENTIAL,
            obj=device,
            reason="The device credential was revoked.",
        )
    return device


def device_touch_heartbeat(*, device: Device, now: dt.datetime | None = None) -> None:
    """Note that a device checked in: refresh last_heartbeat (at most every
    SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS, to spare a write per request) and bring an offline device
    back online. A device flagged for investigation stays flagged: only a person clears that.
    Not audited: devices check in all the time and the row holds the state."""
    now = now or timezone.now()
    fresh_after = now - dt.timedelta(seconds=settings.SAFEROLL_HEARTBEAT_RESOLUTION_SECONDS)
    # The loaded row says whether there is anything to do, so a fresh device costs no query; the
    # updates repeat the condition, so a concurrent request (or the offline sweep) is not undone.
    if device.last_heartbeat is None or device.last_heartbeat < fresh_after:
        Device.objects.filter(
            Q(last_heartbeat__isnull=True) | Q(last_heartbeat__lt=fresh_after), pk=device.pk
        ).update(last_heartbeat=now)
        device.last_heartbeat = now
    if device.status == DeviceStatus.OFFLINE:
        Device.objects.filter(pk=device.pk, status=DeviceStatus.OFFLINE).update(status=DeviceStatus.ONLINE)
        device.status = DeviceStatus.ONLINE


# --- cohorts -----------------------------------------------------------------------------------------


def _as_device_ids(items: Iterable[str | Device]) -> list[str]:
    ids = (item.device_id if isinstance(item, Device) else item for item in items)
    return list(dict.fromkeys(ids))


def _devices_by_id(device_ids: Iterable[str], *, field: str) -> dict[str, Device]:
    wanted = list(dict.fromkeys(device_ids))
    found = {device.device_id: device for device in Device.objects.filter(device_id__in=wanted)}
    unknown = [device_id for device_id in wanted if device_id not in found]
    if unknown:
        raise invalid({field: [f"Unknown device ids: {', '.join(unknown)}."]})
    return found


@transaction.atomic
def cohort_create(
    *,
    actor: Actor,
    name: str,
    kind: str = CohortKind.CUSTOM,
    description: str = "",
    device_ids: Iterable[str | Device] = (),
) -> Cohort:
    """A new cohort, optionally with its first members; one audit event lists them."""
    if kind not in CohortKind.values:
        raise invalid({"kind": [f"Unknown kind '{kind}': use one of {', '.join(CohortKind.values)}."]})
    if Cohort.objects.filter(name=name).exists():
        raise invalid({"name": [f"A cohort named '{name}' already exists."]})
    members = _devices_by_id(_as_device_ids(device_ids), field="device_ids")
    cohort = Cohort(name=name, kind=kind, description=description)
    try:
        with transaction.atomic():
            cohort.save(force_insert=True)
    except IntegrityError:
        raise invalid({"name": [f"A cohort named '{name}' already exists."]}) from None
    # A plan may name a cohort before it exists, so even a new cohort's members are checked.
    cohort_members_adding.send(
        sender=Cohort, cohort=cohort, devices=list(members.values()), field="device_ids"
    )
    user = actor_user(actor)
    CohortMembership.objects.bulk_create(
        [CohortMembership(cohort=cohort, device=device, added_by=user) for device in members.values()]
    )
    audit_record(
        actor=actor,
        action=AuditAction.CREATE,
        obj=cohort,
        changes={
            **(diff_fields({}, {"name": name, "kind": kind, "description": description}) or {}),
            "added": sorted(members),
            "removed": [],
        },
    )
    return cohort


@transaction.atomic
def cohort_update(*, cohort: Cohort, actor: Actor, data: dict[str, Any]) -> Cohort:
    """Change a cohort's kind or description. Its name stays: rollout plans refer to it by name."""
    unknown = set(data) - COHORT_EDITABLE_FIELDS
    if unknown:
        raise invalid({field: ["This field cannot be changed."] for field in sorted(unknown)})
    if "kind" in data and data["kind"] not in CohortKind.values:
        raise invalid(
            {"kind": [f"Unknown kind '{data['kind']}': use one of {', '.join(CohortKind.values)}."]}
        )
    cohort = Cohort.objects.select_for_update().get(pk=cohort.pk)
    before = {field: getattr(cohort, field) for field in COHORT_EDITABLE_FIELDS}
    changed = [
        field for field, value in data.items() if value is not None and getattr(cohort, field) != value
    ]
    for field in changed:
        setattr(cohort, field, data[field])
    if changed:
        cohort.save(update_fields=changed)
        audit_record(
            actor=actor,
            action=AuditAction.UPDATE,
            obj=cohort,
            changes=diff_fields(before, {field: getattr(cohort, field) for field in COHORT_EDITABLE_FIELDS}),
        )
    return cohort


@transaction.atomic
def cohort_change_members(
    *, cohort: Cohort, add: Iterable[str | Device], remove: Iterable[str | Device], actor: Actor
) -> dict[str, list[str]]:
    """Add and remove devices, given by device id (the API) or as Device rows (the admin).

    Unknown ids are refused, listed; devices already in (or already out of) the cohort change
    nothing. One audit event lists the device ids actually added and removed; when nothing
    changed there is no event. Returns {"added": [...], "removed": [...]}."""
    add, remove = _as_device_ids(add), _as_device_ids(remove)
    both = sorted(set(add) & set(remove))
    if both:
        raise invalid({"remove": [f"Device ids both added and removed: {', '.join(both)}."]})
    errors: dict[str, list[str]] = {}
    to_add: dict[str, Device] = {}
    to_remove: dict[str, Device] = {}
    for field, ids in (("add", add), ("remove", remove)):
        try:
            found = _devices_by_id(ids, field=field)
        except ServiceRefused as refused:
            errors.update(refused.errors)
            continue
        (to_add if field == "add" else to_remove).update(found)
    if errors:
        raise invalid(errors)

    # Lock the cohort row so that concurrent edits of the same cohort run one after the other and
    # each audit event lists exactly what its own change did.
    cohort = Cohort.objects.select_for_update().get(pk=cohort.pk)
    current = set(
        CohortMembership.objects.filter(
            cohort=cohort, device__device_id__in=[*to_add, *to_remove]
        ).values_list("device__device_id", flat=True)
    )
    added = sorted(device_id for device_id in to_add if device_id not in current)
    removed = sorted(device_id for device_id in to_remove if device_id in current)
    if added:
        cohort_members_adding.send(
            sender=Cohort, cohort=cohort, devices=[to_add[device_id] for device_id in added], field="add"
        )
        user = actor_user(actor)
        CohortMembership.objects.bulk_create(
            [CohortMembership(cohort=cohort, device=to_add[device_id], added_by=user) for device_id in added]
        )
    if removed:
        CohortMembership.objects.filter(cohort=cohort, device__device_id__in=removed).delete()
    if added or removed:
        audit_record(
            actor=actor,
            action=AuditAction.CHANGE_MEMBERS,
            obj=cohort,
            reason=f"{len(added)} added, {len(removed)} removed.",
            changes={"added": added, "removed": removed},
        )
    return {"added": added, "removed": removed}


def devices_mark_offline(*, now: dt.datetime | None = None) -> int:
    """Devices silent past the threshold are offline; the reporting-rate gate counts them as silent."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.SAFEROLL_OFFLINE_AFTER_SECONDS)
    return (
        Device.objects.filter(status=DeviceStatus.ONLINE)
        .filter(Q(last_heartbeat__lt=cutoff) | Q(last_heartbeat__isnull=True))
        .update(status=DeviceStatus.OFFLINE, status_reason=f"No check-in since {cutoff:%Y-%m-%d %H:%M} UTC.")
    )
