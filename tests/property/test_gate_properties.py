"""Properties of the gate engine over any ring health and signals (hypothesis): worse data never
yields a milder action, no data never promotes, and the rows of the 000 §9.3 decision table hold
for any ring at or above the minimum sample.

Severity, as the engine guarantees it: PROMOTE < WAIT < PAUSE < ROLLBACK, for the same sample (the
same devices reporting, on the same number of checks). It is a total order there: WAIT comes from
counts alone (too few devices, the install share, the bake), so worse values cannot turn a WAIT
into a PROMOTE nor a PROMOTE into a WAIT; they can only make gates fail (PAUSE) or fail critically
(ROLLBACK). A lower reporting rate is more of the ring's devices silent for the same devices
reporting. Fewer devices reporting is not "worse data" in this sense: below the minimum sample the
health gates hold their verdict back (WAIT) by design.
"""

import dataclasses
import datetime as dt

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rollouts.gates import Action, BakeClock, GateConfig, InstallProgress, Signals, evaluate
from telemetry.health import RingHealth

SEVERITY = {Action.PROMOTE: 0, Action.WAIT: 1, Action.PAUSE: 2, Action.ROLLBACK: 3}
CONFIG = GateConfig()
PROPERTIES = settings(max_examples=300, deadline=None, database=None)

shares = st.floats(min_value=0.0, max_value=1.0)
latencies = st.floats(min_value=0.0, max_value=5000.0)


@st.composite
def rings(draw, *, max_devices: int = 5000) -> RingHealth:
    """Any ring's health: its reporting devices, their checks, its rates and latency, and how many
    devices should have reported (unknown, or at least those that did)."""
    total = draw(st.integers(min_value=0, max_value=max_devices))
    return RingHealth(
        ring="ring_5",
        total_devices=total,
        crash_free_rate=draw(shares),
        boot_success_rate=draw(shares),
        median_latency_ms=draw(latencies),
        expected_devices=draw(st.none() | st.integers(min_value=total, max_value=total * 3 + 20)),
        checks=draw(st.none() | st.integers(min_value=total, max_value=total * 40)),
    )


# A stage's bake an hour after a moment it may have started at: over, under way or not started.
BAKE_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
bakes = st.none() | st.builds(
    BakeClock,
    ring=st.just("ring_5"),
    minutes=st.integers(min_value=0, max_value=120),
    started_at=st.none() | st.just(BAKE_START),
    now=st.just(BAKE_START + dt.timedelta(hours=1)),
)
installs = st.none() | st.builds(
    InstallProgress,
    version=st.just("v2.1"),
    targeted=st.integers(min_value=0, max_value=100),
    installed=st.integers(min_value=0, max_value=100),
    unreachable=st.integers(min_value=0, max_value=20),
)
signals = st.builds(
    Signals,
    deployment_failure_rate=st.none() | shares,
    open_sev1_incidents=st.sampled_from([(), ("TVs black in ICU",)]),
    install=installs,
    bake=bakes,
)


@st.composite
def worse(draw, ring: RingHealth, signal: Signals) -> tuple[RingHealth, Signals]:
    """The same ring on the same sample, each figure as bad or worse: lower crash-free and boot
    success, higher latency, more of its devices silent, more failed deployments, a Sev1 open."""
    silent = draw(st.integers(min_value=0, max_value=3 * ring.total_devices + 20))
    expected = ring.expected_devices
    if expected is not None or draw(st.booleans()):
        # Unknown becomes known (a gate added, never removed); known grows: the rate only falls.
        expected = (ring.total_devices if expected is None else expected) + silent
    worse_ring = dataclasses.replace(
        ring,
        crash_free_rate=draw(st.floats(min_value=0.0, max_value=ring.crash_free_rate)),
        boot_success_rate=draw(st.floats(min_value=0.0, max_value=ring.boot_success_rate)),
        median_latency_ms=draw(st.floats(min_value=ring.median_latency_ms, max_value=10000.0)),
        expected_devices=expected,
    )
    failure = signal.deployment_failure_rate
    if failure is not None or draw(st.booleans()):
        failure = draw(st.floats(min_value=failure or 0.0, max_value=1.0))
    worse_signal = dataclasses.replace(
        signal,
        deployment_failure_rate=failure,
        open_sev1_incidents=signal.open_sev1_incidents or draw(st.sampled_from([(), ("Sev1",)])),
    )
    return worse_ring, worse_signal


@PROPERTIES
@given(data=st.data(), ring=rings(), signal=signals)
def test_worse_data_never_yields_a_milder_action(data, ring, signal):
    worse_ring, worse_signal = data.draw(worse(ring, signal))

    before = evaluate(ring, CONFIG, signal).action
    after = evaluate(worse_ring, CONFIG, worse_signal).action

    assert SEVERITY[after] >= SEVERITY[before], (before, after)


@PROPERTIES
@given(
    ring=rings(max_devices=CONFIG.min_sample - 1),
    signal=signals,
    min_sample=st.integers(min_value=1, max_value=500),
)
def test_no_data_never_promotes(ring, signal, min_sample):
    config = dataclasses.replace(CONFIG, min_sample=max(min_sample, ring.total_devices + 1))

    assert evaluate(ring, config, signal).action != Action.PROMOTE
    assert evaluate(RingHealth(ring="pilot"), CONFIG, signal).action != Action.PROMOTE


# --- The decision table (000 §9.3) -----------------------------------------------------------------


def sample_minimum(config: GateConfig) -> tuple[int, int]:
    """The fewest devices and checks the plan judges on. Settings without a minimum of checks
    judge on devices alone."""
    return config.min_sample, getattr(config, "min_checks", 0)


@st.composite
def judged_rings(draw, *, crash_free, boot, latency, healthy_reporting=True) -> RingHealth:
    """A ring at or above the minimum sample, with these figures; its reporting healthy unless
    anything goes."""
    min_devices, min_checks = sample_minimum(CONFIG)
    devices = draw(st.integers(min_value=min_devices, max_value=20000))
    checks = draw(st.integers(min_value=max(devices, min_checks), max_value=max(devices, min_checks) * 20))
    if healthy_reporting:
        expected = draw(st.none() | st.integers(min_value=devices, max_value=int(devices / 0.9)))
    else:
        expected = draw(st.none() | st.integers(min_value=devices, max_value=devices * 10))
    return RingHealth(
        ring="ring_5",
        total_devices=devices,
        crash_free_rate=draw(crash_free),
        boot_success_rate=draw(boot),
        median_latency_ms=draw(latency),
        expected_devices=expected,
        checks=checks,
    )


def between(low: float, high: float, *, low_in=True, high_in=False) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, exclude_min=not low_in, exclude_max=not high_in)


# Every other signal a ring can carry: failed deployments, Sev1, installing, baking.
anything_else = signals
passing = Signals(deployment_failure_rate=0.0)


@PROPERTIES
@given(
    ring=judged_rings(
        crash_free=between(0.99, 1.0, high_in=True),
        boot=between(0.995, 1.0, high_in=True),
        latency=between(0.0, 500.0, high_in=True),
    )
)
def test_all_gates_passing_promotes(ring):
    assert evaluate(ring, CONFIG, passing).action == Action.PROMOTE


@PROPERTIES
@given(
    ring=judged_rings(
        crash_free=between(0.95, 0.99),
        boot=between(0.995, 1.0, high_in=True),
        latency=between(0.0, 500.0, high_in=True),
    )
)
@example(
    ring=RingHealth(
        ring="ring_5",
        total_devices=500,
        crash_free_rate=0.98,
        boot_success_rate=0.996,
        median_latency_ms=450,
        checks=500,
    )
)
def test_one_gate_failing_not_critically_pauses(ring):
    assert evaluate(ring, CONFIG, passing).action == Action.PAUSE


@PROPERTIES
@given(
    ring=judged_rings(
        crash_free=between(0.95, 0.99),
        boot=between(0.97, 0.995),
        latency=between(500.0, 1000.0, low_in=False, high_in=True),
    )
)
@example(
    ring=RingHealth(
        ring="ring_5",
        total_devices=500,
        crash_free_rate=0.97,
        boot_success_rate=0.99,
        median_latency_ms=600,
        checks=500,
    )
)
def test_several_gates_failing_not_critically_pause(ring):
    assert evaluate(ring, CONFIG, passing).action == Action.PAUSE


@PROPERTIES
@given(
    ring=judged_rings(
        crash_free=between(0.0, 0.94, high_in=True), boot=shares, latency=latencies, healthy_reporting=False
    ),
    signal=anything_else,
)
def test_crash_free_at_94_percent_or_below_rolls_back_whatever_else(ring, signal):
    assert evaluate(ring, CONFIG, signal).action == Action.ROLLBACK


@PROPERTIES
@given(
    ring=judged_rings(
        crash_free=shares, boot=between(0.0, 0.96, high_in=True), latency=latencies, healthy_reporting=False
    ),
    signal=anything_else,
)
@example(
    ring=RingHealth(
        ring="ring_5",
        total_devices=500,
        crash_free_rate=0.999,
        boot_success_rate=480 / 500,
        median_latency_ms=40,
        checks=500,
    ),
    signal=passing,
)
def test_boot_success_at_96_percent_or_below_rolls_back_whatever_else(ring, signal):
    assert evaluate(ring, CONFIG, signal).action == Action.ROLLBACK
