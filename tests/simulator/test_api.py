"""How the device's HTTP layer sorts the server's answers into what to do next."""

import httpx
import pytest

from simulator import api as api_module
from simulator.api import Conflict, DeviceApi, Refused, ReleaseManagerApi, Unauthorized, Unavailable, classify
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


# ---- the release manager's calls (the scenarios) ----


def release_manager_for(handler) -> ReleaseManagerApi:
    return ReleaseManagerApi.connect(BASE_URL, "rm-token", transport=httpx.MockTransport(handler))


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The retry waits a test's calls asked for, without waiting them."""
    asked: list[float] = []

    async def no_wait(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(api_module.asyncio, "sleep", no_wait)
    return asked


def test_it_sends_the_release_managers_token_and_asks_for_json():
    seen = []

    def handler(request):
        seen.append((request.headers["Authorization"], request.headers["Accept"], str(request.url)))
        return answer(200, json={"rollouts": []})

    assert run(release_manager_for(handler).unfinished_rollouts()) == []
    assert seen == [
        ("Token rm-token", "application/json", f"{BASE_URL}/api/rollouts?status=active&status=paused")
    ]


def test_it_retries_a_read_the_server_could_not_answer_honouring_retry_after(waits):
    answers = [answer(503, headers={"Retry-After": "4"}), answer(502), answer(200, json={"status": "ok"})]

    assert run(release_manager_for(lambda request: answers.pop(0)).server_health()) == {"status": "ok"}
    assert len(waits) == 2
    assert 4.0 <= waits[0] <= 4.0 * 1.2
    assert 0.25 <= waits[1] <= 1.0


def test_it_gives_up_on_a_read_after_three_attempts(waits):
    calls = []

    def handler(request):
        calls.append(request)
        raise httpx.ConnectError("refused")

    with pytest.raises(Unavailable) as caught:
        run(release_manager_for(handler).rollout("r1"))
    assert len(calls) == 3
    assert str(caught.value).startswith(f"GET /api/rollouts/r1: SafeRoll at {BASE_URL} did not answer")


def test_it_never_repeats_a_command(waits):
    calls = []

    def handler(request):
        calls.append(request)
        return answer(503)

    with pytest.raises(Unavailable):
        run(release_manager_for(handler).command("r1", "promote"))
    assert len(calls) == 1
    assert waits == []


def test_it_reads_a_missing_release_or_plan_as_none():
    api = release_manager_for(lambda request: answer(404, json={"error": "Not found."}))
    assert run(api.release("v9")) is None
    assert run(api.plan("nope")) is None
    with pytest.raises(Refused, match=r"GET /api/rollouts/r1 → HTTP 404: Not found\."):
        run(api.rollout("r1"))


def test_it_names_the_request_and_the_token_when_refused():
    api = release_manager_for(lambda request: answer(403, json={"detail": "Forbidden."}))
    with pytest.raises(Unauthorized) as caught:
        run(api.command("r1", "pause", "why"))
    assert str(caught.value) == (
        "POST /api/rollouts/r1/pause → HTTP 403: Forbidden. Check the token: the scenarios need a release manager's."
    )
    assert caught.value.kind == "HTTP 403"


def test_it_reads_a_refused_decision_as_no_ring_deployed():
    def handler(request):
        return answer(409, json={"error": "Not deployed.", "reason": "created"})

    assert run(release_manager_for(handler).decision("r1")) is None
    with pytest.raises(Conflict, match=r"Not deployed\. \(created\)"):
        run(release_manager_for(handler).command("r1", "promote"))
