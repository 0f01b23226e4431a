"""`manage.py seed_demo [--reset-passwords]`: the demo world of 000 §8 and §11, idempotently.

Hardware variants; releases v2.0 (stable), v2.1, v2.1_buggy and v2.2, each with a small generated
artifact; the rollout plan presets; one user per role; and a fleet of 1,000 devices on v2.0 spread
over the rings 100 / 50 / 250 / 600. Running it again adds only what is missing: nothing is
duplicated, no password is reset (unless asked), no device is moved.
"""

import hashlib
import math

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from devices.choices import DeviceStatus
from devices.models import Device, HardwareVariant, hash_token, new_device_token
from rollouts import services_catalog
from rollouts.models import Release
from saferoll import roles
from saferoll.management.commands.adduser import cli_actor, user_ensure_role

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


def demo_artifact(version: str, size: int = ARTIFACT_BYTES) -> bytes:
    """Deterministic bytes for a version's artifact: the same version always hashes the same."""
    blocks = []
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
        logins = self._users(actor, reset_passwords)

        self.stdout.write(
            self.style.SUCCESS(
                f"Demo fleet: {Device.objects.filter(device_id__startswith=DEVICE_PREFIX).count()} devices "
                f"({created} new), {Release.objects.count()} releases."
            )
        )
        self.stdout.write("")
        self.stdout.write("Portal: http://127.0.0.1:8000/  (start it with `python manage.py serve`)")
        self.stdout.write("Logins (passwords are shown only when they are set):")
        for username, role, password, token in logins:
            shown = password if password else "(unchanged; --reset-passwords to set a new one)"
            self.stdout.write(f"  {username:<9} {role:<16} password: {shown}")
            self.stdout.write(f"  {'':<9} {'':<16} API token: {token}")

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
            services_catalog.release_create(
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
        try:
            from rollouts.presets import ensure_presets
        except ImportError:
            self.stdout.write(self.style.WARNING("Plan presets are not available yet; skipped."))
            return
        ensure_presets()

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

    def _users(self, actor: str, reset_passwords: bool) -> list[tuple[str, str, str | None, str]]:
        logins = []
        for username, role in DEMO_USERS:
            result = user_ensure_role(
                username=username, role=role, reset_password=reset_passwords, actor=actor
            )
            logins.append((username, role, result.generated_password, result.token))
        return logins
