"""The OpenAPI schema is a contract other tools rely on: valid, and true to what the API answers."""

import pytest
import yaml
from django.core.management import call_command


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    target = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    return yaml.safe_load(target.read_text())


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_every_operation_documents_its_errors_in_the_error_shape(schema):
    error = {"$ref": "#/components/schemas/Error"}
    for name, operation in operations(schema):
        responses = operation["responses"]
        assert "400" in responses, name
        if operation.get("security"):
            assert {"401", "403"} <= set(responses), name
        if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
            assert "404" in responses, name
    assert schema["paths"]["/api/cohorts"]["post"]["responses"]["415"]["content"]["application/json"] == {
        "schema": error
    }


@pytest.mark.parametrize(
    ("path", "method"),
    [("/api/health", "post"), ("/api/health/batch", "post"), ("/api/releases/{version}/artifact", "get")],
)
def test_it_offers_the_device_credential_where_devices_are_let_in(schema, path, method):
    assert {"deviceAuth": []} in schema["paths"][path][method]["security"]


@pytest.mark.parametrize(
    ("component", "field"),
    [
        ("Alert", "rollout_id"),
        ("Alert", "device_id"),
        ("Incident", "release"),
        ("Incident", "opened_by"),
        ("Incident", "resolved_by"),
        ("Release", "previous_release"),
        ("Release", "created_by"),
        ("RolloutDetail", "next_ring"),
    ],
)
def test_it_says_which_fields_can_be_null(schema, component, field):
    assert schema["components"]["schemas"][component]["properties"][field]["nullable"] is True


@pytest.mark.parametrize("component", ["Plan", "RolloutDetail"])
def test_it_describes_activation_windows_as_utc_times_of_day_without_an_offset(schema, component):
    start = schema["components"]["schemas"][component]["properties"]["activation_window_start"]

    assert "format" not in start
    assert start["pattern"] == r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$"


def test_it_does_not_call_an_empty_artifact_url_a_uri(schema):
    assert "format" not in schema["components"]["schemas"]["Release"]["properties"]["artifact_url"]


def test_it_documents_both_kinds_of_refused_batch(schema):
    refused = schema["components"]["schemas"]["HealthBatchError"]

    assert refused["required"] == ["error"]
    assert {"fields", "accepted", "rejected"} <= set(refused["properties"])


def test_it_documents_the_conflicts_of_the_emergency_stop(schema):
    assert "409" in schema["paths"]["/api/fleet/emergency-stop"]["post"]["responses"]
    assert "409" in schema["paths"]["/api/fleet/emergency-stop/lift"]["post"]["responses"]


def test_it_keeps_the_enrollment_address_out_of_the_device_ids(schema):
    (parameter,) = schema["paths"]["/api/devices/{device_id}"]["get"]["parameters"]

    assert parameter["schema"]["pattern"] == "^(?!enroll$)[A-Za-z0-9._:-]+$"
