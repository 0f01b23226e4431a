"""Whatever JSON a device sends, the API answers it without a server error."""

import pytest
from hypothesis import HealthCheck as Hypothesis
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import DeviceFactory
from tests.telemetry.support import check, device_client

pytestmark = pytest.mark.django_db

FIELDS = [
    "device_id",
    "ring",
    "version",
    "boot_ok",
    "crash_free",
    "checkin_latency_ms",
    "timestamp",
    "availability",
    "event_lag_ms",
    "dropped_events",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=60)
    | st.datetimes().map(lambda moment: moment.isoformat()),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)
overrides = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4)
fuzz = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[Hypothesis.function_scoped_fixture]
)


@pytest.fixture
def device():
    return DeviceFactory(device_id="tv-fuzz")


@fuzz
@given(changes=overrides)
def test_it_never_answers_a_server_error_to_one_check(device, changes):
    response = device_client(device).post("/api/health", {**check("tv-fuzz"), **changes}, format="json")

    assert response.status_code in (200, 400, 403)
    assert response.json()


@fuzz
@given(batch=st.lists(overrides, min_size=1, max_size=5))
def test_it_never_answers_a_server_error_to_a_batch(device, batch):
    checks = [{**check("tv-fuzz"), **changes} for changes in batch]

    response = device_client(device).post("/api/health/batch", checks, format="json")

    assert response.status_code in (200, 400)
    assert response.json()
