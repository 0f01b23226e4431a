"""Fuzzing the API from its own OpenAPI schema finds no server error (SPEC §14), and the API answers
as its schema says.

Schemathesis reads the schema the app serves at /api/schema/ and sends each operation requests made
from it, valid and invalid, through the WSGI app in-process: as a device on the operations that
offer the device credential, as a release manager on the others, as nobody on enrollment. Valid
path parameters name the seeded world's objects about half the time, so that requests get past the
404 into the views' logic. Every operation of the schema is fuzzed; the live updates' websocket is
not an HTTP operation and is not in it.

One pytest test per operation, each in its own transaction (pytest-django's `db`), so the test runs
the same under pytest-xdist. Each example runs in a savepoint that is rolled back: it starts from
the seeded world whatever the examples before it wrote, which Hypothesis needs to replay and shrink
a failure. The seed is fixed (derandomize), so CI sees the same requests on every run.
"""

from dataclasses import dataclass, field

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from rollouts.services import lifecycle
from saferoll.core import roles
from saferoll.core.alerts import alert_raise
from saferoll.core.models import AuditEvent
from saferoll.wsgi import application
from tests.factories import (
    CohortFactory,
    DeviceFactory,
    EvaluationFactory,
    IncidentFactory,
    ReleaseFactory,
    RolloutPlanFactory,
    UserFactory,
    device_token,
)

CONFIG = SchemathesisConfig.from_dict(
    {
        # The coverage phase sends every boundary case the schema defines, about 3,000 requests
        # here: several minutes, beyond this test's budget. The fuzzing phase covers every
        # operation within it.
        "phases": {"coverage": {"enabled": False}},
        # The test sends real credentials; generated Authorization and Cookie values would only be
        # overwritten.
        "generation": {"with-security-parameters": False},
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)

# Left out: positive_data_acceptance (a schema cannot say which releases, plans or states exist,
# so a well-formed request for an unknown release is rightly refused), negative_data_rejection
# (pagination and boolean filters ignore a malformed value, as DRF and django-filter do) and
# ignored_auth (it asks whether a generated credential was refused; this test sends real ones).
SCHEMA_CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

RINGS = ["pilot", "pilot", "ring_5", "ring_25", "ring_100"]


@dataclass
class World:
    """The seeded objects, listed by the path parameter that names them, and the callers' credentials."""

    person: str = ""
    device: str = ""
    names: dict[str, list] = field(default_factory=dict)


# Filled by the seeded_world fixture before the first example; read while Hypothesis draws cases.
world = World()


@schema.hook
def flatmap_case(context, case):
    """Valid path parameters stay as generated or become the names of real objects. Invalid ones are
    left alone: they are there to be refused."""
    path = case.meta.components.get(ParameterLocation.PATH) if case.meta else None
    if not case.path_parameters or path is None or path.mode != GenerationMode.POSITIVE:
        return st.just(case)
    names = {
        name: st.sampled_from([value, *world.names.get(name, [])])
        for name, value in case.path_parameters.items()
    }
    return st.fixed_dictionaries(names).map(lambda path_parameters: _naming(case, path_parameters))


def _naming(case, path_parameters: dict):
    case.path_parameters = path_parameters
    return case


@pytest.fixture
def seeded_world(db, settings, tmp_path):
    """A few devices in the demo rings, a stable release and a new one, a plan and a started rollout
    of it, a cohort, an incident, an evaluation, an alert and the audit events these wrote."""
    settings.MEDIA_ROOT = tmp_path / "media"
    # The rate limits have tests of their own; here a 429 would make an example depend on the ones
    # before it, in the cache that no savepoint rolls back.
    settings.SAFEROLL_THROTTLE_RATES = dict.fromkeys(settings.SAFEROLL_THROTTLE_RATES)
    manager = UserFactory(username="fuzz-manager", role=roles.RELEASE_MANAGER)
    devices = [DeviceFactory(device_id=f"tv-{index:04d}", ring=ring) for index, ring in enumerate(RINGS)]
    stable = ReleaseFactory(version="v2.0", is_stable=True)
    release = ReleaseFactory(version="v2.1", previous_release=stable)
    plan = RolloutPlanFactory(name="fuzz-plan", is_default=True)
    created = lifecycle.rollout_create(release=release, plan=plan, actor=manager)
    rollout = lifecycle.rollout_start(rollout=created, actor=manager)
    cohort = CohortFactory(name="lobby")
    cohort.devices.add(*devices[:2])
    incident = IncidentFactory(release=release)
    evaluation = EvaluationFactory(rollout=rollout)
    alert = alert_raise(kind="AUTO_PAUSE", title="SafeRoll paused v2.1", rollout=rollout)
    world.person = f"Token {Token.objects.create(user=manager).key}"
    # A pilot device: it has a deployment in the rollout, so its deployment reports get far.
    world.device = f"Device {device_token(devices[0])}"
    world.names = {
        "device_id": [devices[0].device_id],
        "version": [release.version, stable.version],
        "rollout_id": [rollout.rollout_id],
        "plan": [plan.name],
        "name": [cohort.name],
        "ring": ["pilot", "ring_5"],
        "id": [incident.pk, evaluation.pk, alert.pk, AuditEvent.objects.first().pk],
    }
    yield world
    world.names = {}


@pytest.fixture
def one_connection_for_all_requests():
    """At the end of a request Django closes a connection it finds inside a transaction, which would
    end the test's own. Its test client keeps the connection the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def credential(case) -> dict[str, str]:
    security = case.operation.definition.raw.get("security")
    if not security:
        return {}
    if {"deviceAuth": []} in security:
        return {"Authorization": world.device}
    return {"Authorization": world.person}


def errors_say_what_went_wrong(ctx, response, case):
    """Every refusal comes in the API's one error shape: {"error": "<sentence>", ...}."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
        raise AssertionError(f"{response.status_code} without an error sentence: {response.text[:200]!r}")
    return None


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    # The fixtures are set up once per operation on purpose; the savepoint isolates the examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_it_answers_every_request_without_a_server_error_and_as_its_schema_says(
    case, seeded_world, one_connection_for_all_requests
):
    with transaction.atomic():
        response = case.call(headers=credential(case))
        transaction.set_rollback(True)

    case.validate_response(response, checks=[not_a_server_error, errors_say_what_went_wrong, *SCHEMA_CHECKS])
