import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.plumbing import _load_enum_name_overrides
from drf_spectacular.settings import patched_settings

# The shared name SPEC settings should give DeploymentState, which several serializers expose as
# "state" (the device's report takes a subset of it, so the name cannot be inferred).
ENUM_NAMES = {"DeploymentStateEnum": "rollouts.choices.DeploymentState"}


@pytest.fixture
def enum_names():
    _load_enum_name_overrides.cache_clear()
    with patched_settings({"ENUM_NAME_OVERRIDES": ENUM_NAMES}):
        yield
    _load_enum_name_overrides.cache_clear()


def test_it_describes_the_device_endpoints_in_a_valid_schema_without_warnings(enum_names, tmp_path):
    target = tmp_path / "schema.yaml"

    call_command(
        "spectacular",
        "--urlconf",
        "tests.devices.urls",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(target),
    )

    paths = yaml.safe_load(target.read_text())["paths"]
    assert {
        "/api/devices/enroll",
        "/api/devices",
        "/api/devices/{device_id}",
        "/api/devices/{device_id}/rotate-credential",
        "/api/devices/{device_id}/revoke-credential",
        "/api/cohorts",
        "/api/cohorts/{name}",
        "/api/cohorts/{name}/members",
        "/api/device/desired-state",
        "/api/device/deployments/{rollout_id}",
        "/api/device/deployments/{rollout_id}/diagnostics",
    } <= set(paths)
    assert "security" not in paths["/api/devices/enroll"]["post"]
    assert paths["/api/device/desired-state"]["get"]["security"] == [{"deviceAuth": []}]
    assert {"deviceAuth": []} not in paths["/api/devices"]["get"]["security"]
