"""Alerts over REST: every role reads them; operators and above acknowledge them."""

import pytest

from saferoll.core.alerts import alert_raise

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert(db):
    return alert_raise(kind="AUTO_PAUSE", title="SafeRoll paused v2.1")


def test_it_acknowledges_an_alert_once(operator, alert):
    response = operator.post(f"/api/alerts/{alert.pk}/acknowledge")

    assert response.status_code == 200
    assert response.json()["acknowledged_by"] == "operator-user"


@pytest.mark.parametrize("alert_id", ["null,null", "0.5", "²"])
def test_it_answers_not_found_to_an_alert_id_that_is_not_a_number(operator, alert, alert_id):
    response = operator.post(f"/api/alerts/{alert_id}/acknowledge")

    assert response.status_code == 404
    assert response.json()["error"].startswith("There is no API endpoint or object at /api/alerts/")
