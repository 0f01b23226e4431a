"""`manage.py scenario`'s own duties: finding a token and refusing what it cannot run."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.authtoken.models import Token

from saferoll.core import roles
from saferoll.core.models import AuditEvent
from simulator.management.commands.scenario import SCENARIO_USERNAME, scenario_token


def test_it_prefers_the_option_then_the_environment(monkeypatch):
    monkeypatch.setenv("SAFEROLL_TOKEN", "from-env")

    assert scenario_token("from-option", "https://saferoll.example.com") == ("from-option", None)
    assert scenario_token(None, "https://saferoll.example.com") == ("from-env", None)


@pytest.mark.django_db
def test_for_a_server_on_this_machine_it_acts_as_the_scenario_release_manager_and_says_so(monkeypatch):
    monkeypatch.delenv("SAFEROLL_TOKEN", raising=False)

    token, note = scenario_token(None, "http://127.0.0.1:8766")
    again, second_note = scenario_token(None, "http://localhost:8000")

    user = Token.objects.get(key=token).user
    assert user.username == SCENARIO_USERNAME
    assert user.groups.get().name == roles.GROUP_NAMES[roles.RELEASE_MANAGER]
    assert again == token
    assert note.startswith("Created the release manager 'scenario'")
    assert second_note.startswith("Using the release manager 'scenario'")
    assert AuditEvent.objects.filter(action="SET_ROLE", object_repr__contains=SCENARIO_USERNAME).count() == 1


def test_it_asks_for_a_token_for_a_remote_server(monkeypatch):
    monkeypatch.delenv("SAFEROLL_TOKEN", raising=False)

    with pytest.raises(CommandError, match="--token or SAFEROLL_TOKEN"):
        scenario_token(None, "https://saferoll.example.com")


def test_it_refuses_an_unknown_scenario():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("scenario", "sunny", "--token", "t")


def test_it_refuses_a_non_positive_fleet():
    with pytest.raises(CommandError):
        call_command("scenario", "happy", "--fast", "--devices", "0", "--token", "t")
