"""Errors Django answers before or outside the API's views keep the API's shape under /api/, and the
portal's pages elsewhere."""

import pytest
from django.test import RequestFactory

from saferoll.core import roles
from saferoll.core.api.errors import server_error

pytestmark = pytest.mark.django_db


def test_it_answers_an_api_address_that_matches_no_route_in_the_error_shape(viewer):
    # Rollout ids have no dots, so this one matches no route at all.
    response = viewer.get("/api/rollouts/not.a.rollout")

    assert response.status_code == 404
    assert response.json() == {"error": "There is no API endpoint or object at /api/rollouts/not.a.rollout."}


def test_it_keeps_the_portal_not_found_page_outside_the_api(viewer):
    response = viewer.get("/no-such-page")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_it_answers_a_form_with_too_many_fields_in_the_error_shape(persona, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 2
    client = persona(roles.RELEASE_MANAGER)

    response = client.post("/api/cohorts", {"name": "lobby", "kind": "custom", "description": "x"})

    assert response.status_code == 400
    assert response.json() == {"error": "The request has more than 2 fields; send fewer."}


def test_it_answers_a_crash_under_the_api_in_the_error_shape():
    response = server_error(RequestFactory().get("/api/rollouts"))

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/api/rollouts/%00", "/api/releases/v2%00/artifact", "/api/plans/a%00b"])
def test_it_answers_not_found_to_a_path_with_a_nul_character_before_any_lookup(viewer, path):
    response = viewer.get(path)

    assert response.status_code == 404
    assert response.json() == {"error": f"There is no API endpoint or object at {path}."}


def test_it_answers_the_portal_not_found_page_to_a_page_address_with_a_nul_character(viewer):
    response = viewer.get("/rollouts/%00")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
