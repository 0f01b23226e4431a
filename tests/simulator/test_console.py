"""The command language: what parses, what is refused with a helpful line, what reaches the fleet."""

import pytest

from simulator.chaos import ChaosKind
from simulator.console import (
    Blank,
    Chaos,
    Clear,
    CommandError,
    Console,
    Help,
    Inject,
    Quit,
    Scenario,
    Sleep,
    Status,
    format_status,
    format_summary,
    parse,
)
from simulator.health import Pattern


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("inject ring_5 0.03", Inject(0.03, ring="ring_5")),
        ("inject pilot 5%", Inject(0.05, ring="pilot")),
        ("inject ring_5 0.03 --pattern gradual", Inject(0.03, ring="ring_5", pattern=Pattern.GRADUAL)),
        ("inject --pattern=network ring_25 0", Inject(0.0, ring="ring_25", pattern=Pattern.NETWORK)),
        ("inject --version v2.1 0.025", Inject(0.025, version="v2.1")),
        (
            "inject --version v2.1 0.01 --pattern gradual",
            Inject(0.01, version="v2.1", pattern=Pattern.GRADUAL),
        ),
        ("clear", Clear()),
        ("clear ring_5", Clear(ring="ring_5")),
        ("clear --version v2.1", Clear(version="v2.1")),
        ("status", Status()),
        ("  STATUS  ", Status()),
        ("chaos power-loss ring_5 0.2", Chaos(ChaosKind.POWER_LOSS, "ring_5", 0.2)),
        ("chaos stuck-download pilot 10%", Chaos(ChaosKind.STUCK_DOWNLOAD, "pilot", 0.1)),
        ("chaos clock-skew pilot -3600", Chaos(ChaosKind.CLOCK_SKEW, "pilot", -3600.0)),
        ("chaos partition ring_25 90", Chaos(ChaosKind.PARTITION, "ring_25", 90.0)),
        ("scenario disaster", Scenario("disaster")),
        ("scenario manual-pause", Scenario("manual-pause")),
        ("scenario stop", Scenario("stop")),
        ("sleep 20", Sleep(20.0)),
        ("help", Help()),
        ("quit", Quit()),
        ("exit", Quit()),
        ("", Blank()),
        ("   # a comment", Blank()),
        ("status # trailing comment", Status()),
    ],
)
def test_it_parses_valid_commands(line, command):
    assert parse(line) == command


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("launch rockets", "Unknown command 'launch'"),
        ("inject ring_5", "usage: inject"),
        ("inject ring_5 lots", "RATE must be a number"),
        ("inject ring_5 3", "share between 0 and 1"),
        ("inject ring_5 nan", "finite"),
        ("inject ring_5 0.03 --pattern sudden", "Unknown pattern 'sudden'"),
        ("inject ring_5 0.03 --colour red", "Unknown option"),
        ("inject --version", "--version needs a value"),
        ("clear a b", "usage: clear"),
        ("chaos meteor pilot 1", "Unknown chaos 'meteor'"),
        ("chaos partition pilot", "usage: chaos"),
        ("chaos partition pilot 0", "positive"),
        ("chaos power-loss pilot 2", "share between 0 and 1"),
        ("sleep", "usage: sleep"),
        ("sleep -1", "zero or more"),
        ("status now", "takes no arguments"),
        ('inject "ring_5 0.03', "Cannot read that line"),
    ],
)
def test_it_refuses_invalid_commands_with_a_helpful_line(line, hint):
    with pytest.raises(CommandError) as caught:
        parse(line)
    assert hint in str(caught.value)
    assert "\n" not in str(caught.value)


class FakeFleet:
    def __init__(self):
        self.calls = []

    def inject(self, rate, *, ring=None, version=None, pattern=Pattern.IMMEDIATE):
        self.calls.append(("inject", rate, ring, version, pattern))

    def clear(self, *, ring=None, version=None):
        self.calls.append(("clear", ring, version))
        return {"faults": 1, "chaos_devices": 2}

    def chaos(self, kind, ring, value):
        self.calls.append(("chaos", kind, ring, value))
        return 5 if ring == "ring_5" else 0

    def status(self):
        return STATUS

    def rings(self):
        return ["pilot", "ring_5"]

    def matching(self, *, ring=None, version=None):
        return 50 if ring == "ring_5" or version else 0


STATUS = {
    "seed": 42,
    "devices": 150,
    "enrolled": 150,
    "uptime_s": 65.2,
    "target_per_s": 30.0,
    "generated_per_s": 29.9,
    "delivered_per_s": 29.8,
    "lag_ms": {"p50": 2, "p95": 9, "max": 40},
    "cpu_percent": 12.5,
    "rings": {
        "pilot": {
            "devices": 100,
            "versions": {"v2.1": 90, "v2.0": 10},
            "deployments": {"activated": 90, "downloading": 10},
            "crash_free": 0.9931,
            "boot_success": 1.0,
            "median_latency_ms": 50,
            "reporting": 1.0,
            "buffered": 0,
        },
        "ring_5": {
            "devices": 50,
            "versions": {"v2.0": 50},
            "deployments": {"idle": 50},
            "crash_free": None,
            "boot_success": None,
            "median_latency_ms": None,
            "reporting": 0.0,
            "buffered": 120,
        },
    },
    "faults": ["ring ring_5: rate 0.03 immediate (for 20 s)"],
    "chaos": {"partitioned": 50, "powered_off": 0},
    "checks_generated": 1900,
    "checks_delivered": 1780,
    "checks_duplicate": 1,
    "checks_dropped": 0,
    "checks_rejected": 0,
    "failures": {"simulated partition": 40},
}


def test_it_sends_commands_to_the_fleet():
    fleet = FakeFleet()
    console = Console(fleet)
    assert "ring ring_5: 50 device(s)" in console.handle("inject ring_5 0.03").text
    console.handle("inject --version v2.1 0.01 --pattern gradual")
    assert "Cleared for ring pilot: 1 fault(s), chaos on 2 device(s)" in console.handle("clear pilot").text
    assert "armed on 5 device(s) of ring_5" in console.handle("chaos power-loss ring_5 0.1").text
    assert fleet.calls == [
        ("inject", 0.03, "ring_5", None, Pattern.IMMEDIATE),
        ("inject", 0.01, None, "v2.1", Pattern.GRADUAL),
        ("clear", "pilot", None),
        ("chaos", ChaosKind.POWER_LOSS, "ring_5", 0.1),
    ]


def test_it_says_when_a_ring_has_no_devices():
    console = Console(FakeFleet())
    assert (
        "no device is in ring 'ring_7' now; rings: pilot, ring_5" in console.handle("inject ring_7 0.1").text
    )
    assert "no device affected" in console.handle("chaos partition ring_7 30").text


def test_it_answers_unknown_commands_without_touching_the_fleet():
    fleet = FakeFleet()
    reply = Console(fleet).handle("deploy everything")
    assert "Type 'help'" in reply.text and not reply.quit
    assert fleet.calls == []


def test_it_asks_the_runner_to_sleep_or_quit():
    console = Console(FakeFleet())
    assert console.handle("sleep 2.5").sleep == 2.5
    assert console.handle("quit").quit
    assert "chaos partition RING SECONDS" in console.handle("help").text


def test_it_formats_the_status_with_rates_lag_and_rings():
    text = format_status(STATUS)
    assert "29.9/s taken" in text and "target 30.0/s" in text and "p95 9 ms" in text
    assert "pilot" in text and "v2.1:90 v2.0:10" in text and "0.9931" in text
    ring_5 = next(line for line in text.splitlines() if line.startswith("ring_5"))
    assert "–" in ring_5 and "120" in ring_5
    assert "faults: ring ring_5: rate 0.03" in text
    assert "chaos: partitioned 50" in text
    assert "simulated partition ×40" in text


def test_it_formats_an_empty_status_and_a_summary():
    empty = {"seed": 1, "devices": 0, "enrolled": 0, "rings": {}, "faults": [], "chaos": {}}
    assert "faults: none" in format_status(empty)
    summary = format_summary({**STATUS, "buffered": 3})
    assert "1900 checks taken" in summary and "3 still buffered" in summary and "seed 42" in summary
