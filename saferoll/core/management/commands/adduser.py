"""`manage.py adduser USERNAME --role viewer|operator|release_manager|admin [--password PW]`.

Creates or updates a person: staff (so they can use the admin), in exactly one role group, and
prints their API token for `Authorization: Token <token>`."""

import getpass
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from saferoll.core import roles
from saferoll.core.audit import audit_record, diff_fields

ACTION_SET_ROLE = "SET_ROLE"


@dataclass(frozen=True)
class EnsuredUser:
    user: AbstractBaseUser
    created: bool
    # The password set by this call when it was generated here (to print once), else None.
    generated_password: str | None
    token: str


def generate_password() -> str:
    """A strong password for a person to change later: 128 bits, URL-safe."""
    return secrets.token_urlsafe(16)


def cli_actor() -> str:
    """The audit actor of a management command: the operating-system account that ran it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@transaction.atomic
def user_ensure_role(
    *, username: str, role: str, password: str | None = None, reset_password: bool = False, actor: str = "cli"
) -> EnsuredUser:
    """Create or update a person with exactly one role. A new person without a given password
    gets a generated one; an existing one keeps theirs unless a password is given or
    `reset_password` asks for a new generated one."""
    if role not in roles.ROLES:
        raise ValueError(f"Unknown role {role!r}; valid roles: {', '.join(roles.ROLES)}.")
    User = get_user_model()
    # Locked so that two runs for the same name do not both create or both reassign.
    user = User.objects.select_for_update().filter(username=username).first()
    created = user is None
    if user is None:
        user = User(username=username)
    before = {"is_staff": user.is_staff, "role": _role_of(user) if not created else None}

    generated = None
    if password is None and (created or reset_password):
        password = generated = generate_password()
    if password is not None:
        user.set_password(password)
    user.is_staff = True
    user.is_active = True
    user.save()

    role_groups = Group.objects.filter(name__in=roles.GROUP_NAMES.values())
    user.groups.remove(*role_groups.exclude(name=roles.GROUP_NAMES[role]))
    user.groups.add(Group.objects.get(name=roles.GROUP_NAMES[role]))

    token, _ = Token.objects.get_or_create(user=user)
    changes = diff_fields(before, {"is_staff": True, "role": role})
    if created or changes or password is not None:
        audit_record(
            actor=actor,
            action=ACTION_SET_ROLE,
            obj=user,
            reason=("Created" if created else "Updated")
            + f" with the role {role}"
            + (", password set." if password is not None and not created else "."),
            changes=changes,
        )
    return EnsuredUser(user=user, created=created, generated_password=generated, token=token.key)


def _role_of(user) -> str | None:
    names = {name: role for role, name in roles.GROUP_NAMES.items()}
    held = [names[group.name] for group in user.groups.filter(name__in=names)]
    return held[0] if len(held) == 1 else (",".join(sorted(held)) or None)


class Command(BaseCommand):
    help = "Create or update a SafeRoll user with one role, and print their API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, help=f"One of: {', '.join(roles.ROLES)}.")
        parser.add_argument("--password", help="Set this password (else a new user gets a generated one).")

    def handle(self, *args, username: str, role: str, password: str | None, **options) -> None:
        if role not in roles.ROLES:
            raise CommandError(f"Unknown role {role!r}; valid roles: {', '.join(roles.ROLES)}.")
        if password is not None:
            try:
                validate_password(password, user=get_user_model()(username=username))
            except ValidationError as exc:
                raise CommandError("Password refused: " + " ".join(exc.messages)) from None
        result = user_ensure_role(username=username, role=role, password=password, actor=cli_actor())
        verb = "Created" if result.created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} user {username} with the role {role}."))
        if result.generated_password:
            self.stdout.write(f"Password: {result.generated_password}  (shown once; change it in the admin)")
        elif password is not None:
            self.stdout.write("Password: set as given.")
        self.stdout.write(f"API token: {result.token}")
