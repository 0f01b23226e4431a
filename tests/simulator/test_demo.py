"""`manage.py demo`: what it starts, in which order it stops things, and what it tells the person.

No server is started here: the child processes, the health probe and the simulator are fakes that
record what the command did, in order."""

import io
import itertools
import re
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.authtoken.models import Token

from simulator.management.commands import demo
from simulator.management.commands.demo import ChildSpec, Supervisor, child_plan, local_url, port_in_use

PIDS = itertools.count(90001)


class FakeProcess:
    """Just enough of subprocess.Popen; `stubborn` ones ignore SIGTERM."""

    def __init__(self, argv, events, *, stubborn=False, **kwargs):
        self.argv = argv
        self.kwargs = kwargs
        self.events = events
        self.stubborn = stubborn
        self.pid = next(PIDS)
        self.returncode = None
        self.name = "celery" if "celery" in argv else argv[2]
        events.append(f"start {self.name}")

    def poll(self):
        return self.returncode

    def terminate(self):
        self.events.append(f"terminate {self.name}")
        if not self.stubborn:
            self.returncode = 0

    def wait(self, timeout=None):
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.argv, timeout)
        self.events.append(f"wait {self.name}")
        return self.returncode

    def kill(self):
        self.events.append(f"kill {self.name}")
        self.returncode = -9


def fake_supervisor(events, *, stubborn=(), **kwargs) -> Supervisor:
    def popen(argv, **options):
        name = "celery" if "celery" in argv else argv[2]
        return FakeProcess(argv, events, stubborn=name in stubborn, **options)

    return Supervisor(popen=popen, **kwargs)


@pytest.fixture
def killpg(monkeypatch):
    """Never signal a real process group from a test."""
    calls = []
    monkeypatch.setattr(demo.os, "killpg", lambda pid, sig: calls.append((pid, sig)))
    return calls


def test_it_plans_only_the_server_in_the_embedded_default(tmp_path):
    [serve] = child_plan(host="127.0.0.1", port=8000, redis_url=None, state_dir=tmp_path, python="/py")

    assert serve.name == "serve"
    assert serve.argv == ["/py", demo.MANAGE_PY, "serve", "--host", "127.0.0.1", "--port", "8000"]
    assert serve.log == tmp_path / "serve.log"


def test_it_adds_the_celery_worker_with_beat_when_redis_is_configured(tmp_path):
    serve, celery = child_plan(
        host="0.0.0.0", port=9000, redis_url="redis://127.0.0.1:6379/0", state_dir=tmp_path, python="/py"
    )

    assert serve.argv[-4:] == ["--host", "0.0.0.0", "--port", "9000"]
    assert celery.argv[:7] == ["/py", "-m", "celery", "-A", "saferoll", "worker", "-B"]
    assert celery.log == tmp_path / "celery.log"


def test_it_starts_each_child_in_its_own_session_with_this_environment_and_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEROLL_DEMO_MARKER", "seen")
    monkeypatch.delenv("SAFEROLL_HTTPS", raising=False)
    events = []
    supervisor = fake_supervisor(events)
    spec = ChildSpec("serve", ["/py", "manage.py", "serve"], tmp_path / "logs" / "serve.log")

    process = supervisor.start(spec)

    assert process.kwargs["start_new_session"] is True
    assert process.kwargs["env"]["SAFEROLL_DEMO_MARKER"] == "seen"
    # The demo is served on plain http://127.0.0.1, also with DATABASE_URL set.
    assert process.kwargs["env"]["SAFEROLL_HTTPS"] == "false"
    assert process.kwargs["stdin"] is subprocess.DEVNULL
    assert process.kwargs["stderr"] is subprocess.STDOUT
    assert Path(process.kwargs["stdout"].name) == spec.log and spec.log.exists()


def test_it_stops_the_children_in_order_and_kills_one_that_ignores_sigterm(tmp_path, killpg):
    events = []
    supervisor = fake_supervisor(events, stubborn={"celery"}, stop_timeout=0.01)
    for spec in child_plan(host="127.0.0.1", port=8000, redis_url="redis://x", state_dir=tmp_path):
        supervisor.start(spec)
    said = []

    supervisor.stop(say=said.append)

    assert events == [
        "start serve",
        "start celery",
        "terminate serve",
        "wait serve",
        "terminate celery",
        "kill celery",
        "wait celery",
    ]
    celery = supervisor.children[1][1]
    assert killpg == [(celery.pid, demo.signal.SIGKILL)]
    assert any("did not stop" in line for line in said)
    # Stopping again touches nothing: every child has exited.
    supervisor.stop()
    assert events[-1] == "wait celery"


def test_it_leaves_https_to_a_person_who_asked_for_it(monkeypatch):
    monkeypatch.setenv("SAFEROLL_HTTPS", "true")
    assert demo.child_environment()["SAFEROLL_HTTPS"] == "true"


def test_it_knows_when_a_port_is_taken():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("::", "http://[::1]:8000"),
        ("localhost", "http://localhost:8000"),
    ],
)
def test_it_reaches_the_server_on_this_machine(host, url):
    assert local_url(host, 8000) == url


def test_it_waits_until_the_server_answers_its_health_check(tmp_path):
    supervisor = fake_supervisor([])
    supervisor.start(ChildSpec("serve", ["/py", "m", "serve"], tmp_path / "serve.log"))
    answers = iter([httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(200)])
    slept = []

    def get(url, timeout):
        assert url == "http://127.0.0.1:8000/health"
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    demo.wait_until_up("http://127.0.0.1:8000", supervisor=supervisor, get=get, sleep=slept.append)

    assert len(slept) == 2


def test_it_gives_up_with_the_end_of_the_log_when_the_server_exits(tmp_path):
    supervisor = fake_supervisor([])
    spec = ChildSpec("serve", ["/py", "m", "serve"], tmp_path / "serve.log")
    supervisor.start(spec).returncode = 1
    spec.log.write_text("starting\nTraceback: address already in use\n")

    with pytest.raises(CommandError, match=r"serve exited with status 1(.|\n)*address already in use"):
        demo.wait_until_up("http://127.0.0.1:8000", supervisor=supervisor, get=None, sleep=None)


def test_it_gives_up_when_the_server_never_answers(tmp_path):
    supervisor = fake_supervisor([])
    supervisor.start(ChildSpec("serve", ["/py", "m", "serve"], tmp_path / "serve.log"))
    clock = itertools.count(0, 10)

    def get(url, timeout):
        raise httpx.ConnectError("refused")

    with pytest.raises(CommandError, match="did not answer"):
        demo.wait_until_up(
            "http://127.0.0.1:8000",
            supervisor=supervisor,
            timeout=30,
            get=get,
            sleep=lambda seconds: None,
            clock=lambda: next(clock),
        )


# ---- the command as a whole ---------------------------------------------------------------------


@pytest.fixture
def demo_env(settings, tmp_path, monkeypatch, killpg):
    """The command with fake children, probe and simulator; `events` records what happened."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STATE_DIR = tmp_path / "state"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SAFEROLL_RING_SHARES = {"pilot": 10, "ring_5": 5, "ring_25": 25, "ring_100": 60}
    settings.REDIS_URL = None
    events = []
    env = {"events": events, "configs": [], "wait": lambda url, supervisor: events.append(f"health {url}")}
    monkeypatch.setattr(demo, "port_in_use", lambda host, port: False)
    monkeypatch.setattr(demo, "Supervisor", lambda: fake_supervisor(events))
    monkeypatch.setattr(demo, "wait_until_up", lambda url, *, supervisor: env["wait"](url, supervisor))

    def simulate(config, *, out, stdin, scenarios):
        events.append("simulate")
        env["configs"].append(config)
        env["scenarios"] = scenarios
        return {}

    monkeypatch.setattr(demo, "run_simulator", simulate)
    return env


def run_demo(*args: str) -> str:
    out = io.StringIO()
    call_command("demo", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_it_serves_then_simulates_then_stops_the_server(demo_env, settings):
    output = run_demo("--port", "8765", "--devices", "20")

    assert demo_env["events"] == [
        "start serve",
        "health http://127.0.0.1:8765",
        "simulate",
        "terminate serve",
        "wait serve",
    ]
    [config] = demo_env["configs"]
    gateway = get_user_model().objects.get(username="fleet-gateway")
    assert config.gateway_token == Token.objects.get(user=gateway).key
    assert config.enrollment_key == settings.SAFEROLL_ENROLLMENT_KEY
    assert (config.api_url, config.devices, config.interval) == ("http://127.0.0.1:8765", 20, 5.0)
    assert (config.checkin_interval, config.devices_per_site) == (60.0, 125)
    # The logins it prints work: their passwords were set by this run.
    for username in ("viewer", "operator", "release", "admin"):
        password = re.search(rf"  {username}\s+\S+\s+password: (\S+)", output).group(1)
        assert get_user_model().objects.get(username=username).check_password(password)
    assert "http://127.0.0.1:8765/" in output
    assert f"serve log: {settings.STATE_DIR / 'serve.log'}" in output
    # Scenarios are played at the prompt, with these devices, as the demo's release manager.
    release = get_user_model().objects.get(username="release")
    assert demo_env["scenarios"].api_url == "http://127.0.0.1:8765"
    assert demo_env["scenarios"].token == Token.objects.get(user=release).key
    assert "scenario happy | scenario disaster | scenario manual-pause" in output
    assert output.rstrip().endswith("Demo stopped.")


@pytest.mark.django_db
def test_it_runs_the_celery_worker_and_beat_beside_the_server_with_redis(demo_env, settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"

    output = run_demo("--devices", "20")

    assert demo_env["events"] == [
        "start serve",
        "start celery",
        "health http://127.0.0.1:8000",
        "simulate",
        "terminate serve",
        "wait serve",
        "terminate celery",
        "wait celery",
    ]
    assert "celery -A saferoll worker -B" in output


@pytest.mark.django_db
def test_it_stops_the_server_when_interrupted_while_waiting_for_it(demo_env):
    def interrupted(url, supervisor):
        raise KeyboardInterrupt

    demo_env["wait"] = interrupted

    output = run_demo("--devices", "20")

    assert demo_env["events"] == ["start serve", "terminate serve", "wait serve"]
    assert "Interrupted." in output and "Demo stopped." in output


@pytest.mark.django_db
def test_it_stops_what_it_started_when_the_server_fails_to_start(demo_env):
    def failed(url, supervisor):
        raise demo.ChildFailed("serve exited with status 1 while starting")

    demo_env["wait"] = failed

    with pytest.raises(CommandError, match="serve exited"):
        run_demo("--devices", "20")
    assert demo_env["events"] == ["start serve", "terminate serve", "wait serve"]


def test_it_says_so_when_the_port_is_taken():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(CommandError, match=f"Port {port} on 127.0.0.1 is already in use"):
            call_command("demo", "--port", str(port), stdout=io.StringIO())


def test_it_leaves_no_signal_handler_of_its_own_behind(demo_env, monkeypatch):
    monkeypatch.setattr(demo, "migrations_pending", lambda: True)
    before = demo.signal.getsignal(demo.signal.SIGTERM)

    with pytest.raises(CommandError, match="not migrated"):
        run_demo()

    assert demo.signal.getsignal(demo.signal.SIGTERM) is before
