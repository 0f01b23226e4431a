"""A simulated device against a fake SafeRoll, driven tick by tick on a made-up clock."""

import asyncio
import datetime as dt
import itertools

import httpx

from simulator.device import DeviceSettings, Phase, parse_time
from tests.simulator.fakes import T0, FakeServer, advance, install, make_device, release, run

ARTIFACT = b"v2.1 image " * 100


def server_with_release(**kwargs) -> FakeServer:
    server = FakeServer(**kwargs)
    server.artifacts["v2.1"] = ARTIFACT
    return server


def test_it_enrolls_then_reports_health_every_interval():
    server = FakeServer(ring="ring_5")
    device = make_device(server)
    run(advance(device, T0 + 59))
    assert device.enrolled and device.ring == "ring_5"
    checks = server.checks_of("tv-0001")
    assert len(checks) == 12
    stamps = [parse_time(check["timestamp"]) for check in checks]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [5.0] * 11
    assert {check["ring"] for check in checks} == {"ring_5"}
    assert {check["version"] for check in checks} == {"v2.0"}
    # The desired state is read right after enrolling, then every 15 s.
    assert server.count("/api/device/desired-state") == 4


def test_it_asks_for_the_ring_it_was_given_and_keeps_the_servers_on_reenrollment():
    server = FakeServer()
    server.rings["tv-0001"] = "ring_25"
    device = make_device(server)
    device.requested_ring = "pilot"
    run(advance(device, T0))
    assert device.ring == "ring_25"


def test_it_installs_verifies_and_activates_a_release():
    server = server_with_release()
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT))
    run(advance(device, T0 + 20))
    assert server.states("tv-0001", "r1") == ["downloading", "verified", "activated"]
    assert device.version == "v2.1" and device.deployment.phase is Phase.ACTIVATED
    assert server.count("/api/releases/v2.1/artifact") == 1
    server.desired["tv-0001"] = {"action": "none", "version": "v2.1"}
    run(advance(device, T0 + 60))
    checks = server.checks_of("tv-0001")
    assert checks[0]["version"] == "v2.0" and checks[-1]["version"] == "v2.1"
    assert device.phase == "activated"
    assert server.states("tv-0001") == ["downloading", "verified", "activated"]


def test_it_takes_a_few_seconds_to_download_and_activate():
    server = server_with_release()
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT))
    run(advance(device, T0 + 0.99))
    assert device.deployment.phase is Phase.DOWNLOADING
    assert 1.0 <= device.deployment.ready_at - T0 <= 4.0
    run(advance(device, device.deployment.ready_at))
    assert device.deployment.phase is Phase.ACTIVATING
    assert device.version == "v2.0"


def test_it_downloads_but_waits_for_permission_to_activate():
    server = server_with_release()
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT), activate=False)
    run(advance(device, T0 + 60))
    assert server.states("tv-0001") == ["downloading", "verified"]
    assert device.version == "v2.0"
    # Activation allowed, but only after the maintenance window opens (device clock).
    opens = dt.datetime.fromtimestamp(T0 + 120, dt.UTC).isoformat()
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT), activate_after=opens)
    run(advance(device, T0 + 119))
    assert device.version == "v2.0"
    run(advance(device, T0 + 125))
    assert device.version == "v2.1"
    assert server.states("tv-0001") == ["downloading", "verified", "activated"]


def test_it_reports_failed_on_a_sha256_mismatch():
    server = server_with_release()
    server.artifacts["v2.1"] = b"tampered"
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT))
    run(advance(device, T0 + 60))
    assert server.states("tv-0001") == ["downloading", "failed"]
    error = server.reports[-1][2]["error"]
    assert "SHA-256 mismatch" in error
    assert device.version == "v2.0"
    # It does not try the same rollout again.
    assert server.count("/api/releases/v2.1/artifact") == 1


def test_it_tries_a_failed_release_again_when_told_to_install_it_again():
    server = server_with_release(retries=1)
    server.artifacts["v2.1"] = b"tampered"
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT))
    run(advance(device, T0 + 14))
    assert server.states("tv-0001") == ["downloading", "failed"]
    # The plan retries the deployment: at its next check-in the device is told to install again.
    server.artifacts["v2.1"] = ARTIFACT
    run(advance(device, T0 + 40))
    assert server.states("tv-0001") == ["downloading", "failed", "downloading", "verified", "activated"]
    assert device.version == "v2.1"
    assert server.count("/api/releases/v2.1/artifact") == 2


def test_it_keeps_its_version_while_its_wave_is_not_released():
    server = server_with_release()
    device = make_device(server)
    server.desired["tv-0001"] = {"action": "none", "version": "v2.0"}
    run(advance(device, T0 + 40))
    assert device.phase == "idle" and device.version == "v2.0"
    assert server.states("tv-0001") == []
    # Its wave comes: the next check-in says install.
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT))
    run(advance(device, T0 + 80))
    assert server.states("tv-0001") == ["downloading", "verified", "activated"]


def test_it_reports_failed_when_the_artifact_is_missing():
    server = FakeServer()
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT))
    run(advance(device, T0 + 30))
    assert server.states("tv-0001") == ["downloading", "failed"]
    assert "Artifact download refused: HTTP 404" in server.reports[-1][2]["error"]


def test_it_trusts_an_artifact_hosted_elsewhere_by_size_without_fetching_it():
    server = FakeServer()
    device = make_device(server)
    remote = release("v2.1", ARTIFACT, artifact_url="https://updates.example.com/v2.1.img")
    server.desired["tv-0001"] = install("r1", remote)
    run(advance(device, T0 + 30))
    assert server.states("tv-0001") == ["downloading", "verified", "activated"]
    assert not any("artifact" in path for _, path in server.requests)


def test_it_rolls_back_to_the_previous_version_without_a_download():
    server = server_with_release()
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT))
    run(advance(device, T0 + 20))
    assert device.version == "v2.1"
    server.desired["tv-0001"] = {"action": "rollback", "rollout_id": "r1", "release": release("v2.0", b"old")}
    run(advance(device, T0 + 40))
    assert device.version == "v2.0"
    assert server.states("tv-0001") == ["downloading", "verified", "activated", "rolled_back"]
    assert server.count("/api/releases/v2.0/artifact") == 0
    # Reported once, even while the server keeps saying rollback.
    run(advance(device, T0 + 90))
    assert server.states("tv-0001").count("rolled_back") == 1
    assert server.checks_of("tv-0001")[-1]["version"] == "v2.0"


def test_it_confirms_a_rollback_of_a_release_it_never_activated():
    server = server_with_release()
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT), activate=False)
    run(advance(device, T0 + 20))
    server.desired["tv-0001"] = {"action": "rollback", "rollout_id": "r1", "release": None, "version": "v2.0"}
    run(advance(device, T0 + 40))
    assert server.states("tv-0001") == ["downloading", "verified", "rolled_back"]
    assert device.version == "v2.0"


def test_it_rereads_the_desired_state_soon_after_a_conflict():
    server = server_with_release(conflict_states={"verified"})
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT))
    run(advance(device, T0 + 5))
    # The verified step was refused: the device dropped its work and asks again within seconds.
    assert device.deployment is None or device.deployment.phase is Phase.DOWNLOADING
    assert device.next_checkin_at - T0 < 10
    server.conflict_states.clear()
    server.desired["tv-0001"] = {"action": "none", "version": "v2.0"}
    reads_before = server.count("/api/device/desired-state")
    run(advance(device, T0 + 12))
    assert server.count("/api/device/desired-state") > reads_before
    assert device.version == "v2.0" and device.deployment is None


def test_it_still_confirms_a_rollback_queued_behind_a_refused_report():
    server = server_with_release()
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT), activate=False)
    run(advance(device, T0 + 20))
    # A report that did not get through before the rollout was rolled back, then the rollback.
    device.outbox.append(("r1", {"state": "activated"}))
    rollback = {"action": "rollback", "rollout_id": "r1", "release": None, "version": "v2.0"}
    server.desired["tv-0001"] = rollback
    device.follow(rollback, T0 + 20)
    server.conflict_states = {"activated"}

    run(advance(device, T0 + 30))

    assert server.states("tv-0001", "r1") == ["downloading", "verified", "rolled_back"]
    assert not device.outbox


def test_it_abandons_unfinished_work_when_told_there_is_nothing_to_do():
    server = server_with_release()
    device = make_device(server)
    server.desired["tv-0001"] = install("r1", release("v2.1", ARTIFACT), activate=False)
    run(advance(device, T0 + 10))
    assert device.phase == "verified"
    server.desired["tv-0001"] = {"action": "none", "version": "v2.0"}
    run(advance(device, T0 + 20))
    assert device.phase == "idle" and device.version == "v2.0"


def test_it_buffers_while_the_server_is_down_and_resyncs_through_the_batch_endpoint():
    server = FakeServer()
    device = make_device(server)
    run(advance(device, T0 + 10))
    server.down_status, server.retry_after = 503, "5"
    run(advance(device, T0 + 60))
    assert len(device.buffer) >= 9
    server.down_status = None
    run(advance(device, T0 + 90))
    assert not device.buffer
    assert server.batch_calls >= 1
    checks = server.checks_of("tv-0001")
    stamps = [parse_time(check["timestamp"]) for check in checks]
    # Every slot from the start to the end is there, exactly once.
    assert stamps == [T0 + 5 * slot for slot in range(len(stamps))]
    assert len(stamps) == 19
    assert server.duplicates == 0


def test_it_waits_for_retry_after_before_trying_again():
    server = FakeServer()
    device = make_device(server)
    run(advance(device, T0))
    server.down_status, server.retry_after = 503, "12"
    run(advance(device, T0 + 5))
    failed_at = T0 + 5
    assert failed_at + 12 <= device.retry_at <= failed_at + 12 * 1.2
    health_posts = server.count("/api/health")
    run(advance(device, failed_at + 11.9))
    assert server.count("/api/health") == health_posts
    assert len(device.buffer) == 3


def test_it_backs_off_exponentially_while_the_server_stays_unreachable():
    server = FakeServer()
    device = make_device(server)
    run(advance(device, T0))
    server.down_status = 502
    run(advance(device, T0 + 300))
    failures = device.backoff.failures
    assert failures >= 5
    # 300 s of outage with a 16 s cap: far fewer attempts than the 60 checks taken.
    assert server.count("/api/health") + server.count("/api/health/batch") < 40


def test_it_resends_a_check_whose_answer_was_lost_without_it_being_stored_twice():
    server = FakeServer(lose_answers=1)
    device = make_device(server)
    run(advance(device, T0 + 30))
    assert not device.buffer
    checks = server.checks_of("tv-0001")
    assert len(checks) == 7
    # The server saw the retry as a duplicate of what it stored; the device counted it once.
    assert server.duplicates == 1
    assert device.delivered == 7


def test_it_drops_the_oldest_checks_when_its_buffer_is_full_and_counts_them():
    server = FakeServer()
    device = make_device(server, settings=DeviceSettings(buffer_limit=5))
    run(advance(device, T0))
    server.down_status = 503
    run(advance(device, T0 + 60))
    assert len(device.buffer) == 5
    assert device.dropped == 7
    newest = [parse_time(check["timestamp"]) for check in device.buffer]
    assert newest == [T0 + 5 * slot for slot in range(8, 13)]


def test_it_does_not_retry_a_check_the_server_rejected():
    server = FakeServer()
    device = make_device(server)
    run(advance(device, T0))
    device.buffer.append({**server.checks_of("tv-0001")[0], "crash_free": "high", "timestamp": "x"})
    run(advance(device, T0 + 20))
    assert device.rejected == 1
    assert not device.buffer
    # One post per slot (0, 5, 10, 15, 20 s) plus the single attempt of the rejected check.
    assert server.count("/api/health") + server.count("/api/health/batch") == 6


def test_it_enrolls_again_when_its_token_is_refused_and_keeps_its_checks():
    server = FakeServer()
    device = make_device(server)
    run(advance(device, T0 + 10))
    server.tokens.clear()
    run(advance(device, T0 + 40))
    assert server.enrollments == 2
    assert not device.buffer
    stamps = [parse_time(check["timestamp"]) for check in server.checks_of("tv-0001")]
    assert stamps == [T0 + 5 * slot for slot in range(9)]


def test_it_waits_a_minute_when_its_enrollment_key_is_refused():
    server = FakeServer()
    device = make_device(server)
    device.enrollment_key = "wrong"
    run(advance(device, T0 + 50))
    assert server.enrollments == 0 and server.count("/api/devices/enroll") == 1
    assert not device.enrolled and device.generated == 0


def test_it_halves_its_batches_when_the_server_says_they_are_too_large():
    server = FakeServer(batch_limit=4)
    device = make_device(server)
    run(advance(device, T0))
    server.down_status = 503
    run(advance(device, T0 + 50))
    server.down_status = None
    run(advance(device, T0 + 80))
    assert not device.buffer and device.rejected == 0
    assert device.batch_size <= 4
    assert len(server.checks_of("tv-0001")) == 17


def test_it_treats_a_release_without_an_artifact_as_verified_by_size():
    server = FakeServer()
    device = make_device(server)
    bare = {"version": "v2.1", "artifact_url": None, "size_bytes": None, "sha256": None, "signature": None}
    server.desired["tv-0001"] = install("r1", bare)
    run(advance(device, T0 + 20))
    assert server.states("tv-0001") == ["downloading", "verified", "activated"]
    assert [path for _, path in server.requests if "artifact" in path or path == "/"] == []


def test_it_keeps_taking_checks_while_a_request_is_in_flight():
    server = FakeServer()
    device = make_device(server)
    run(advance(device, T0 + 5))
    stored_before = len(server.stored)

    async def scenario():
        release_answer = asyncio.Event()
        plain = server.handle

        async def slow(request):
            # The server sits on this request until the test lets it answer.
            await release_answer.wait()
            return plain(request)

        device.api.client._transport = httpx.MockTransport(slow)
        device.local_step(T0 + 10)
        in_flight = asyncio.create_task(device.network_step(T0 + 10))
        await asyncio.sleep(0)
        # Two more slots pass while the first delivery hangs: both are measured on time.
        device.local_step(T0 + 15)
        device.local_step(T0 + 20)
        assert len(device.buffer) == 3
        release_answer.set()
        await in_flight
        return list(device.buffer)

    left = run(scenario())
    # The hung check was acknowledged and removed; the two taken meanwhile followed in one batch.
    assert not left
    assert len(server.stored) == stored_before + 3
    assert server.batch_calls == 1 and server.duplicates == 0
    assert [parse_time(c["timestamp"]) for c in server.checks_of("tv-0001")] == [T0 + 5 * k for k in range(5)]


def test_its_checks_carry_the_custom_kpis_of_the_device_model():
    server = FakeServer()
    device = make_device(server)
    run(advance(device, T0 + 30))

    checks = server.checks_of("tv-0001")
    assert checks and all(
        set(check["metrics"]) == {"disk_free_pct", "temperature_c", "crash_loops"} for check in checks
    )
    assert all(0 <= check["metrics"]["disk_free_pct"] <= 100 for check in checks)
