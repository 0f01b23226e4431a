"""The management command's own duties: finding the enrollment key and refusing bad options."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from simulator.management.commands.simulate import enrollment_key, gateway_token


def test_it_prefers_the_option_then_the_environment(monkeypatch):
    monkeypatch.setenv("SAFEROLL_ENROLLMENT_KEY", "from-env")
    assert enrollment_key("from-option", "https://saferoll.example.com") == "from-option"
    assert enrollment_key(None, "https://saferoll.example.com") == "from-env"


@override_settings(SAFEROLL_ENROLLMENT_KEY="embedded-abc")
def test_it_reads_the_projects_key_for_a_server_on_this_machine(monkeypatch):
    monkeypatch.delenv("SAFEROLL_ENROLLMENT_KEY", raising=False)
    assert enrollment_key(None, "http://127.0.0.1:8000") == "embedded-abc"
    assert enrollment_key(None, "http://localhost:8765") == "embedded-abc"


def test_it_asks_for_the_key_of_a_remote_server(monkeypatch):
    monkeypatch.delenv("SAFEROLL_ENROLLMENT_KEY", raising=False)
    with pytest.raises(CommandError, match="--enrollment-key"):
        enrollment_key(None, "https://saferoll.example.com")


def test_it_refuses_a_missing_script(tmp_path):
    with pytest.raises(CommandError, match="Cannot read the script"):
        call_command("simulate", "--script", str(tmp_path / "nope.txt"), "--enrollment-key", "k")


def test_it_refuses_malformed_rings():
    with pytest.raises(CommandError, match="Rings look like"):
        call_command("simulate", "--rings", "pilot=10", "--enrollment-key", "k")


def test_it_refuses_a_non_positive_device_count():
    with pytest.raises(CommandError):
        call_command("simulate", "--devices", "0", "--enrollment-key", "k")


def test_it_takes_the_gateway_token_from_the_option_or_the_environment(monkeypatch):
    monkeypatch.delenv("SAFEROLL_GATEWAY_TOKEN", raising=False)
    assert gateway_token(None) is None
    assert gateway_token("from-option") == "from-option"
    monkeypatch.setenv("SAFEROLL_GATEWAY_TOKEN", "from-env")
    assert gateway_token(None) == "from-env"
    assert gateway_token("from-option") == "from-option"


@pytest.mark.parametrize("value", ["-0.1", "1", "lots"])
def test_it_refuses_a_checkin_jitter_outside_zero_to_one(value):
    with pytest.raises(CommandError):
        call_command("simulate", "--checkin-jitter", value, "--enrollment-key", "k")
