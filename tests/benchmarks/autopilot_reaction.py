"""How fast does SafeRoll react? Time from the first critical health check to the committed
AUTO_ROLLBACK, over HTTP against `manage.py serve` in the embedded default (SQLite, in-process
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

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("BENCH_PORT", "8799"))
BASE = f"http://127.0.0.1:{PORT}"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
DEVICES = 20


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


def one_run(client: httpx.Client, token: str, enrollment_key: str, run: int) -> float:
    people = {"Authorization": f"Token {token}"}
    version = f"v9.{run}-bench-{int(time.time())}"
    client.post("/api/releases", json={"version": version, "previous_release": "v9.0-stable"}, headers=people)
    devices = []
    for index in range(DEVICES):
        answer = client.post(
            "/api/devices/enroll",
            json={"device_id": f"bench-{run}-{index}", "enrollment_key": enrollment_key, "ring": "pilot"},
        )
        answer.raise_for_status()
        devices.append((answer.json()["device_id"], {"Authorization": f"Device {answer.json()['token']}"}))
    rollout = client.post("/api/rollouts", json={"version": version}, headers=people).json()
    rollout_id = rollout["rollout_id"]
    client.post(f"/api/rollouts/{rollout_id}/start", headers=people).raise_for_status()
    for _, headers in devices:
        for step in ("downloading", "verified", "activated"):
            client.post(f"/api/device/deployments/{rollout_id}", json={"state": step}, headers=headers)

    started = time.monotonic()
    for device_id, headers in devices:
        client.post(
            "/api/health",
            json={
                "device_id": device_id,
                "ring": "pilot",
                "version": version,
                "boot_ok": True,
                "crash_free": 0.80,
                "checkin_latency_ms": 60,
            },
            headers=headers,
        ).raise_for_status()

    def rolled_back() -> bool:
        return client.get(f"/api/rollouts/{rollout_id}", headers=people).json()["state"] == "rolled_back"

    wait_for(rolled_back, timeout=60)
    return time.monotonic() - started


def main() -> None:
    state = tempfile.mkdtemp(prefix="saferoll-bench-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(SAFEROLL_STATE_DIR=state, SAFEROLL_LOG_LEVEL="WARNING")
    manage(env, "migrate", "--no-input")
    token = manage(
        env, "adduser", "bench", "--role", "release_manager", "--password", "bench-pass-91x"
    ).split()[-1]
    enrollment_key = manage(
        env, "shell", "-c", "from django.conf import settings; print(settings.SAFEROLL_ENROLLMENT_KEY)"
    ).strip()
    manage(env, "shell", "-c", "from rollouts.presets import ensure_presets; ensure_presets()")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(PORT)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=BASE, timeout=10) as client:
            wait_for(lambda: _up(client), timeout=30)
            client.post(
                "/api/releases",
                json={"version": "v9.0-stable", "is_stable": True},
                headers={"Authorization": f"Token {token}"},
            )
            times = [one_run(client, token, enrollment_key, run) for run in range(RUNS)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        "first critical check → committed AUTO_ROLLBACK (embedded serve, "
        f"autopilot period {os.environ.get('SAFEROLL_AUTOPILOT_PERIOD_SECONDS', '10')} s):"
    )
    print("  runs:   " + ", ".join(f"{t:.2f} s" for t in times))
    print(f"  median: {statistics.median(times):.2f} s")


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
