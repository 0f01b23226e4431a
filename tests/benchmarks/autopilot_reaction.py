"""How fast does SafeRoll react? Time from the critical health check that completes the gates'
minimum sample to the committed AUTO_ROLLBACK, over HTTP against `manage.py serve` in the embedded default (SQLite, in-process
worker and beat), median of several runs. Run with `make bench`.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.benchmarks.merge import figure, merge

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("BENCH_PORT", "8799"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
DEVICES = 20
# Heartbeats each pilot device sends: 20 devices × 10 checks is the default minimum sample (200
# checks) the gates need before they judge, so the time includes reaching it.
CHECKS_PER_DEVICE = 10
# Healthy devices elsewhere in the fleet, so the failing pilot is a pilot-sized slice (not a
# fleet-wide failure, which would raise the emergency stop instead).
BACKGROUND_DEVICES = 200
# 000 §1.3: a decision in under 10 seconds.
CEILING_SECONDS = 10.0


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def wait_for(predicate, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def enroll(client: httpx.Client, enrollment_key: str, device_id: str, ring: str) -> dict:
    answer = client.post(
        "/api/devices/enroll", json={"device_id": device_id, "enrollment_key": enrollment_key, "ring": ring}
    )
    answer.raise_for_status()
    return {"Authorization": f"Device {answer.json()['token']}"}


def report(
    client: httpx.Client, device_id: str, headers: dict, crash_free: float, version: str | None = None
):
    body = {
        "device_id": device_id,
        "ring": "any",
        "boot_ok": True,
        "crash_free": crash_free,
        "checkin_latency_ms": 60,
    }
    if version:
        body["version"] = version
    client.post("/api/health", json=body, headers=headers).raise_for_status()


def one_run(
    client: httpx.Client, token: str, enrollment_key: str, run: int, background: list, deadline: float
) -> float:
    people = {"Authorization": f"Token {token}"}
    version = f"v9.{run}-bench-{int(time.time())}"
    client.post("/api/releases", json={"version": version, "previous_release": "v9.0-stable"}, headers=people)
    devices = [
        (f"bench-{run}-{index}", enroll(client, enrollment_key, f"bench-{run}-{index}", "pilot"))
        for index in range(DEVICES)
    ]
    rollout = client.post("/api/rollouts", json={"version": version}, headers=people).json()
    rollout_id = rollout["rollout_id"]
    client.post(f"/api/rollouts/{rollout_id}/start", headers=people).raise_for_status()
    for _, headers in devices:
        for step in ("downloading", "verified", "activated"):
            client.post(f"/api/device/deployments/{rollout_id}", json={"state": step}, headers=headers)

    for device_id, headers in background:
        report(client, device_id, headers, crash_free=0.995)

    for _ in range(CHECKS_PER_DEVICE - 1):
        for device_id, headers in devices:
            report(client, device_id, headers, crash_free=0.80, version=version)
    # The clock starts when the server has the data it needs: the check that completes the sample.
    *first, (last_device, last_headers) = devices
    for device_id, headers in first:
        report(client, device_id, headers, crash_free=0.80, version=version)
    started = time.monotonic()
    report(client, last_device, last_headers, crash_free=0.80, version=version)

    def rolled_back() -> bool:
        return client.get(f"/api/rollouts/{rollout_id}", headers=people).json()["state"] == "rolled_back"

    try:
        wait_for(rolled_back, timeout=deadline)
    except TimeoutError:
        detail = client.get(f"/api/rollouts/{rollout_id}", headers=people).json()
        verdict = client.get(f"/api/rollouts/{rollout_id}/should_promote", headers=people).json()
        raise TimeoutError(
            f"no rollback in {deadline} s: state {detail['state']}, gates: {verdict}"
        ) from None
    return time.monotonic() - started


def main() -> None:
    times = [measure_once(run) for run in range(RUNS)]
    period = os.environ.get("SAFEROLL_AUTOPILOT_PERIOD_SECONDS", "10")
    print(
        f"critical check completing the sample -> committed AUTO_ROLLBACK (embedded serve, autopilot period {period} s):"
    )
    print("  runs:   " + ", ".join(f"{t:.2f} s" for t in times))
    print(f"  median: {statistics.median(times):.2f} s")
    merge(
        {
            "autopilot_reaction_seconds": figure(
                round(statistics.median(times), 2), "s", ceiling=CEILING_SECONDS
            )
        }
    )


def measure_once(run: int, *, port: int = PORT, period: float | None = None, deadline: float = 60) -> float:
    """One independent sample: a fresh embedded server (its own SQLite state, no DATABASE_URL or
    REDIS_URL, so the worker and beat run inside `serve`), a fleet, one rollout whose pilot turns
    critical. Returns the seconds from the check that completes the sample to the committed AUTO_ROLLBACK."""
    state = tempfile.mkdtemp(prefix="saferoll-bench-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    enrollment_key = "bench-enrollment-key"
    env.update(SAFEROLL_STATE_DIR=state, SAFEROLL_LOG_LEVEL="WARNING", SAFEROLL_ENROLLMENT_KEY=enrollment_key)
    if period is not None:
        env["SAFEROLL_AUTOPILOT_PERIOD_SECONDS"] = str(period)
    manage(env, "migrate", "--no-input")
    token = manage(
        env, "adduser", "bench", "--role", "release_manager", "--password", "bench-pass-91x"
    ).split()[-1]
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_for(lambda: _up(client), timeout=30)
            client.post(
                "/api/releases",
                json={"version": "v9.0-stable", "is_stable": True},
                headers={"Authorization": f"Token {token}"},
            ).raise_for_status()
            background = [
                (f"healthy-{index}", enroll(client, enrollment_key, f"healthy-{index}", "ring_100"))
                for index in range(BACKGROUND_DEVICES)
            ]
            return one_run(client, token, enrollment_key, run, background, deadline)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
