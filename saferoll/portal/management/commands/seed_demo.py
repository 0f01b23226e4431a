"""`manage.py seed_demo [--reset-passwords]`: the demo world of 000 §8 and §11, idempotently.

Hardware variants; releases v2.0 (stable), v2.1, v2.1_buggy and v2.2, each with a small generated
artifact; the rollout plan presets; one user per role; the site gateways' service account
"fleet-gateway"; and a fleet of 1,000 devices on v2.0 spread over the rings 100 / 50 / 250 / 600.
Running it again adds only what is missing: nothing is duplicated, no password is reset (unless
asked), no device is moved, no token changes.

The pieces are functions, so that `manage.py demo` can make sure of the same world and print the
same logins.
"""

import hashlib
import math
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from devices.choices import DeviceStatus
from devices.models import Device, HardwareVariant, hash_token, new_device_token
from rollouts.models import Release
from rollouts.services import plans, releases
from saferoll.core import roles
from saferoll.core.audit import audit_record, diff_fields
from saferoll.core.management.commands.adduser import cli_actor, user_ensure_role
from telemetry.permissions import INGEST_PERMISSION

VARIANTS = [
    ("tv-32-gen2", "32-inch bedside TV, second generation"),
    ("tv-43-gen3", "43-inch patient-room TV, third generation"),
    ("tv-55-gen3", "55-inch lounge TV, third generation"),
]
STABLE_VERSION = "v2.0"
# (version, stable, previous release, notes)
RELEASES = [
    (STABLE_VERSION, True, None, "The fleet's current stable release."),
    ("v2.1", False, STABLE_VERSION, "Faster channel switching; healthy (demo: happy path)."),
    ("v2.1_buggy", False, STABLE_VERSION, "Has a subtle network bug (demo: disaster averted)."),
    ("v2.2", False, STABLE_VERSION, "New guide layout (demo: manual pause and resume)."),
]
ARTIFACT_BYTES = 64 * 1024
# One user per role; the release manager's login is the shorter "release".
DEMO_USERS = [
    ("viewer", roles.VIEWER),
    ("operator", roles.OPERATOR),
    ("release", roles.RELEASE_MANAGER),
    ("admin", roles.ADMIN),
]
SITES = [
    ("St. Mary's Hospital", "eu-west"),
    ("General Hospital Lyon", "eu-west"),
    ("Charité Mitte", "eu-central"),
    ("Karolinska", "eu-north"),
    ("Mercy Medical Center", "us-east"),
    ("Cedars Clinic", "us-west"),
    ("Royal Melbourne", "ap-southeast"),
    ("Toronto General", "ca-central"),
]
DEVICE_PREFIX = "tv-"
# The service account the simulator's site gateways report health with (SPEC §1: the batch path).
GATEWAY_USERNAME = "fleet-gateway"
ACTION_SET_PERMISSIONS = "SET_PERMISSIONS"


class TextOutput(Protocol):
    """Where write_logins writes: a text stream, or a management command's stdout (OutputWrapper)."""

    def write(self, text: str, /) -> object: ...


@dataclass(frozen=True)
class Login:
    username: str
    role: str
    # Set by this run (to print once), else None: the stored password is unchanged.
    password: str | None
    token: str


@dataclass(frozen=True)
class ServiceAccount:
    user: AbstractBaseUser
    created: bool
    token: str


def demo_artifact(version: str, size: int = ARTIFACT_BYTES) -> bytes:
    """Deterministic bytes for a version's artifact: the same version always hashes the same."""
    blocks: list[bytes] = []
    counter = 0
    while sum(len(block) for block in blocks) < size:
        blocks.append(hashlib.sha256(f"saferoll-demo:{version}:{counter}".encode()).digest())
        counter += 1
    return b"".join(blocks)[:size]


def ring_sizes(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split `total` devices over the rings by share, largest remainders first, summing exactly."""
    exact = {ring: total * share / 100 for ring, share in shares.items()}
    sizes = {ring: math.floor(value) for ring, value in exact.items()}
    leftover = total - sum(sizes.values())
    for ring in sorted(exact, key=lambda ring: exact[ring] - sizes[ring], reverse=True)[:leftover]:
        sizes[ring] += 1
    return sizes


def demo_logins(*, actor: str, reset_passwords: bool) -> list[Login]:
    """One login per role (created when missing; a new generated password only when created or
    when `reset_passwords` asks for it)."""
    logins = []
    for username, role in DEMO_USERS:
        result = user_ensure_role(username=username, role=role, reset_password=reset_passwords, actor=actor)
        logins.append(Login(username, role, result.generated_password, result.token))
    return logins


@transaction.atomic
def gateway_account_ensure(*, actor: str, username: str = GATEWAY_USERNAME) -> ServiceAccount:
    """The site gateways' service account: not a person (no role group, no admin, a password
    nobody can log in with) holding exactly `telemetry.ingest_health`, so its API token may report
    health for any enrolled device (telemetry.permissions) and do nothing else. Anything else it
    was given is taken away again; the token is kept, so a running gateway keeps working."""
    User = get_user_model()
    # Locked so that two seeds at once neither both create it nor interleave their changes.
    user = User.objects.select_for_update().filter(username=username).first()
    created = user is None
    if user is None:
        user = User(username=username)
    before = {} if created else _account_state(user)

    user.is_staff = False
    user.is_superuser = False
    user.is_active = True
    if created or user.has_usable_password():
        user.set_unusable_password()
    user.save()
    user.groups.clear()
    app_label, codename = INGEST_PERMISSION.split(".")
    user.user_permissions.set([Permission.objects.get(content_type__app_label=app_label, codename=codename)])

    token, _ = Token.objects.get_or_create(user=user)
    changes = diff_fields(before, _account_state(user))
    if created or changes:
        audit_record(
            actor=actor,
            action=ACTION_SET_PERMISSIONS,
            obj=user,
            reason=("Created" if created else "Reset")
            + f" as the site gateways' service account, holding only {INGEST_PERMISSION}.",
            changes=changes,
        )
    return ServiceAccount(user=user, created=created, token=token.key)


def _account_state(user) -> dict:
    return {
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "usable_password": user.has_usable_password(),
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "permissions": sorted(
            f"{app}.{codename}"
            for app, codename in user.user_permissions.values_list("content_type__app_label", "codename")
        ),
    }


def write_logins(
    out: TextOutput,
    logins: list[Login],
    gateway: ServiceAccount,
    heading: str = "Logins (passwords are shown only when they are set):",
) -> None:
    """The logins, one per role, with each password only when this run set it, their API tokens,
    and the gateway's token."""
    out.write(heading + "\n")
    for login in logins:
        shown = login.password or "(unchanged; --reset-passwords to set a new one)"
        out.write(f"  {login.username:<9} {login.role:<16} password: {shown}\n")
        out.write(f"  {'':<9} {'':<16} API token: {login.token}\n")
    out.write(
        f"Site gateway service account {gateway.user.get_username()} (reports health only, cannot log in):\n"
    )
    out.write(f"  {'':<9} {'':<16} API token: {gateway.token}\n")


class Command(BaseCommand):
    help = "Seed the demo: variants, releases, plan presets, one user per role and a 1,000-device fleet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--devices", type=int, default=1000, help="Size of the demo fleet (default 1000)."
        )
        parser.add_argument(
            "--reset-passwords", action="store_true", help="Give the demo users new generated passwords."
        )

    def handle(self, *args, devices: int, reset_passwords: bool, **options) -> None:
        actor = cli_actor()
        variants = self._variants()
        self._releases(actor, variants)
        self._plans()
        created = self._fleet(devices, variants)
        logins = demo_logins(actor=actor, reset_passwords=reset_passwords)
        gateway = gateway_account_ensure(actor=actor)

        self.stdout.write(
            self.style.SUCCESS(
                f"Demo fleet: {Device.objects.filter(device_id__startswith=DEVICE_PREFIX).count()} devices "
                f"({created} new), {Release.objects.count()} releases."
            )
        )
        self.stdout.write("")
        self.stdout.write(
            "Portal: http://127.0.0.1:8000/  (start it with `python manage.py serve`, "
            "or everything with `python manage.py demo`)"
        )
        write_logins(self.stdout, logins, gateway)

    def _variants(self) -> list[HardwareVariant]:
        variants = []
        for name, description in VARIANTS:
            variant, _ = HardwareVariant.objects.get_or_create(
                name=name, defaults={"description": description}
            )
            variants.append(variant)
        return variants

    def _releases(self, actor: str, variants: list[HardwareVariant]) -> None:
        names = [variant.name for variant in variants]
        for version, stable, previous, notes in RELEASES:
            if Release.objects.filter(version=version).exists():
                continue
            releases.release_create(
                version=version,
                actor=actor,
                artifact=ContentFile(demo_artifact(version), name=f"saferoll-{version}.img"),
                compatible_variants=names,
                notes=notes,
                is_stable=stable,
                previous_release=Release.objects.get(version=previous) if previous else None,
            )
            self.stdout.write(f"Release {version} created.")

    def _plans(self) -> None:
        plans.ensure_presets()

    @transaction.atomic
    def _fleet(self, total: int, variants: list[HardwareVariant]) -> int:
        """Create the devices that are missing, in bulk. Existing devices are left as they are."""
        sizes = ring_sizes(total, settings.SAFEROLL_RING_SHARES)
        wanted = []
        number = 0
        now = timezone.now()
        for ring, size in sizes.items():
            for _ in range(size):
                number += 1
                site, region = SITES[number % len(SITES)]
                wanted.append(
                    Device(
                        device_id=f"{DEVICE_PREFIX}{number:04d}",
                        ring=ring,
                        variant=variants[number % len(variants)],
                        site=site,
                        region=region,
                        app_version=STABLE_VERSION,
                        base_image_version="2024.10",
                        agent_version="1.4.2",
                        # Offline until the device (or the simulator) enrolls and checks in.
                        status=DeviceStatus.OFFLINE,
                        # Registered like device_create does, with a credential that nobody is
                        # shown: enrolling with the fleet key then issues the device its own token
                        # (a device without any credential counts as revoked and may not enroll).
                        token_hash=hash_token(new_device_token()),
                        token_issued_at=now,
                    )
                )
        existing = set(
            Device.objects.filter(device_id__in=[device.device_id for device in wanted]).values_list(
                "device_id", flat=True
            )
        )
        missing = [device for device in wanted if device.device_id not in existing]
        # ignore_conflicts: a concurrent seed inserting the same ids must not fail this one.
        Device.objects.bulk_create(missing, batch_size=500, ignore_conflicts=True)
        return len(missing)
