"""Celery task durations: on /metrics when the worker runs in the web process (the embedded
default), on the worker's own port (SAFEROLL_WORKER_METRICS_PORT) when it runs on its own."""

import logging
import urllib.error
import urllib.request

import pytest

from rollouts import autopilot, tasks
from saferoll.core import metrics
from tests.system.metrics_support import parse, scrape, value

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789abcdef"
DURATION = "saferoll_task_duration_seconds"


def runs(samples, task: str, state: str) -> float:
    return samples.get((f"{DURATION}_count", frozenset({"task": task, "state": state}.items())), 0)


def test_it_records_the_duration_of_every_task_run():
    task = "rollouts.tasks.sweep_deployments"
    before = scrape()

    tasks.sweep_deployments.apply()
    tasks.sweep_deployments.apply()

    after = scrape()
    assert runs(after, task, "SUCCESS") - runs(before, task, "SUCCESS") == 2
    assert value(after, f"{DURATION}_bucket", task=task, state="SUCCESS", le="+Inf") == runs(
        after, task, "SUCCESS"
    )


def test_it_records_a_failed_run_under_its_state(monkeypatch):
    def broken():
        raise RuntimeError("the database went away")

    monkeypatch.setattr(autopilot, "fleet_check_health", broken)
    task = "rollouts.tasks.check_fleet_health"
    before = scrape()

    tasks.check_fleet_health.apply()

    after = scrape()
    assert runs(after, task, "FAILURE") - runs(before, task, "FAILURE") == 1
    assert runs(after, task, "SUCCESS") == runs(before, task, "SUCCESS")


@pytest.fixture
def worker_endpoint():
    """The worker's metrics server on a free port; the URL to scrape it."""
    server = metrics.serve_worker_metrics(0, host="127.0.0.1")
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()


def fetch(url: str, authorization: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    return urllib.request.urlopen(request, timeout=10)


def test_the_worker_serves_its_task_durations_on_its_own_port(worker_endpoint, settings):
    settings.SAFEROLL_METRICS_TOKEN = ""
    tasks.sweep_deployments.apply()

    with fetch(worker_endpoint) as response:
        samples = parse(response.read().decode())

    assert runs(samples, "rollouts.tasks.sweep_deployments", "SUCCESS") >= 1
    # The fleet is the web's to report: a worker answering it too would count it twice.
    assert not any(name.startswith("saferoll_rollouts") for name, _ in samples)


def test_the_worker_endpoint_asks_for_the_configured_token(worker_endpoint, settings):
    settings.SAFEROLL_METRICS_TOKEN = TOKEN

    with pytest.raises(urllib.error.HTTPError) as refused:
        fetch(worker_endpoint, "Bearer not-the-token-at-all")
    with fetch(worker_endpoint, f"Bearer {TOKEN}") as response:
        status = response.status

    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert status == 200


# The receiver is called directly: sending worker_init would also run Celery's Django fixup,
# which closes the database connection under the test's transaction.
class FakeWorker:
    def __init__(self, pool_cls: str) -> None:
        self.pool_cls = pool_cls


@pytest.fixture
def served_ports(monkeypatch):
    """The ports a starting worker would serve its metrics on (nothing is bound)."""
    ports = []
    monkeypatch.setattr(metrics, "serve_worker_metrics", ports.append)
    return ports


def test_a_starting_worker_serves_its_metrics_on_the_configured_port(settings, served_ports, monkeypatch):
    settings.SAFEROLL_WORKER_METRICS_PORT = 9808
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/saferoll-worker-metrics")

    metrics.on_worker_init(sender=FakeWorker("prefork"))

    assert served_ports == [9808]


def test_a_starting_worker_serves_no_metrics_when_no_port_is_configured(settings, served_ports):
    settings.SAFEROLL_WORKER_METRICS_PORT = 0

    metrics.on_worker_init(sender=FakeWorker("solo"))

    assert served_ports == []


def test_a_forking_worker_without_a_multiprocess_directory_says_its_children_go_unseen(
    settings, served_ports, monkeypatch, caplog
):
    settings.SAFEROLL_WORKER_METRICS_PORT = 9808
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    with caplog.at_level(logging.WARNING, logger="saferoll.core.metrics"):
        metrics.on_worker_init(sender=FakeWorker("prefork"))
        metrics.on_worker_init(sender=FakeWorker("threads"))

    assert served_ports == [9808, 9808]
    assert [record.getMessage().split(":")[0] for record in caplog.records] == ["worker metrics"]
    assert "PROMETHEUS_MULTIPROC_DIR" in caplog.records[0].getMessage()
