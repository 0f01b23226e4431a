"""How the device's HTTP layer sorts the server's answers into what to do next."""

import httpx
import pytest

from simulator.api import Conflict, DeviceApi, Refused, Unauthorized, Unavailable, classify
from tests.simulator.fakes import BASE_URL, run


def answer(status: int, **kwargs) -> httpx.Response:
    return httpx.Response(status, **kwargs)


def test_it_accepts_any_2xx():
    assert classify(answer(200)) is None
    assert classify(answer(201)) is None


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_it_retries_server_errors_and_rate_limits(status):
    failure = classify(answer(status, headers={"Retry-After": "7"}))
    assert isinstance(failure, Unavailable)
    assert failure.retry_after == 7.0
    assert failure.kind == f"HTTP {status}"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, Unauthorized), (403, Unauthorized), (409, Conflict), (400, Refused), (404, Refused)],
)
def test_it_does_not_retry_client_errors(status, kind):
    failure = classify(
        answer(status, json={"error": "Invalid health check.", "fields": {"crash_free": ["bad"]}})
    )
    assert type(failure) is kind
    assert "Invalid health check." in failure.reason and "crash_free" in failure.reason


def api_for(handler) -> DeviceApi:
    return DeviceApi(httpx.AsyncClient(base_url=BASE_URL, transport=httpx.MockTransport(handler)), token="t")


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_it_turns_network_errors_into_unavailable(error):
    def handler(request):
        raise error

    with pytest.raises(Unavailable):
        run(api_for(handler).post_health({"device_id": "x"}))


def test_it_fails_fast_without_a_request_when_the_link_is_down():
    seen = []

    def handler(request):
        seen.append(request)
        return answer(200)

    api = api_for(handler)
    api.link_down = "simulated partition"
    with pytest.raises(Unavailable) as caught:
        run(api.post_health({}))
    assert caught.value.kind == "simulated partition"
    assert seen == []


def test_it_sends_the_device_token():
    seen = []

    def handler(request):
        seen.append(request.headers["Authorization"])
        return answer(200, json={"action": "none", "version": "v1"})

    run(api_for(handler).desired_state())
    assert seen == ["Device t"]


def test_it_hashes_a_streamed_artifact():
    def handler(request):
        return answer(200, content=b"abc")

    size, digest = run(api_for(handler).download_sha256("/api/releases/v2/artifact"))
    assert size == 3
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_it_refuses_a_missing_artifact():
    with pytest.raises(Refused):
        run(api_for(lambda request: answer(404, json={"error": "gone"})).download_sha256("/a"))


def test_it_knows_which_artifacts_are_served_by_saferoll():
    api = api_for(lambda request: answer(200))
    assert api.is_local(f"{BASE_URL}/api/releases/v2/artifact")
    assert api.is_local("/api/releases/v2/artifact")
    assert not api.is_local("https://updates.example.com/v2.img")
