"""The timeline's lines: elapsed time, what happened, the ring, why — one line each."""

import datetime as dt

import pytest

from simulator.timeline import (
    Timeline,
    event_ring,
    event_text,
    format_blast_radius,
    format_elapsed,
    format_line,
    parse_timestamp,
)

CREATED_AT = "2026-01-05T10:00:00.000000Z"


def event(action: str, seconds: float, *, actor: str = "saferoll", reason: str = "why", **rings) -> dict:
    at = parse_timestamp(CREATED_AT) + dt.timedelta(seconds=seconds)
    return {"action": action, "timestamp": at.isoformat(), "actor": actor, "reason": reason, **rings}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "+00:00"), (42.9, "+00:42"), (61, "+01:01"), (3725, "+1:02:05"), (-0.3, "+00:00")],
)
def test_it_shows_elapsed_time_as_minutes_and_seconds(seconds, text):
    assert format_elapsed(seconds) == text


def test_it_lays_out_one_line_per_event_in_columns():
    line = format_line(42, "AUTO_ROLLBACK", "ring_5", "Critical: boot success\n rate 95.0% is below 97.0%.")

    assert line == "+00:42  AUTO_ROLLBACK  ring_5    Critical: boot success rate 95.0% is below 97.0%."


def test_it_shows_a_dash_for_an_event_without_a_ring():
    assert format_line(0, "CREATED", None, "Created.") == "+00:00  CREATED        -         Created."


def test_an_event_is_about_the_ring_it_went_to_else_the_ring_it_was_in():
    assert event_ring({"from_ring": "pilot", "to_ring": "ring_5"}) == "ring_5"
    assert event_ring({"from_ring": "ring_5", "to_ring": None}) == "ring_5"
    assert event_ring({"from_ring": None, "to_ring": None}) is None


def test_a_persons_action_says_who_took_it_and_saferolls_do_not():
    assert event_text({"action": "PAUSE", "actor": "scenario", "reason": "Investigating"}) == (
        "Investigating [by scenario]"
    )
    assert event_text({"action": "AUTO_ROLLBACK", "actor": "saferoll", "reason": "Critical."}) == "Critical."
    assert (
        event_text({"action": "PAUSE", "actor": "scenario", "reason": ""})
        == "(no reason given) [by scenario]"
    )


def test_it_places_events_by_the_servers_clock_even_when_it_differs_from_ours():
    # The run began at local time 1000; the rollout was created (server clock) when it was 1005 here,
    # although the server's clock says 10:00:00 — hours away from ours.
    timeline = Timeline(started_at=1000.0)
    timeline.anchor(CREATED_AT, 1005.0)

    lines = timeline.new_events([event("CREATED", 0), event("AUTO_ROLLBACK", 37, from_ring="ring_5")])

    assert [line[:7] for line in lines] == ["+00:05 ", "+00:42 "]
    assert timeline.to_local(event("X", 10)["timestamp"]) == pytest.approx(1015.0)


def test_it_shows_each_event_once():
    timeline = Timeline(started_at=0.0)
    timeline.anchor(CREATED_AT, 0.0)
    first = [event("CREATED", 0), event("START", 1, to_ring="pilot")]

    assert len(timeline.new_events(first)) == 2
    assert timeline.new_events(first) == []
    assert [
        line.split()[1] for line in timeline.new_events([*first, event("PROMOTE", 9, to_ring="ring_5")])
    ] == ["PROMOTE"]
    assert len(timeline.lines) == 3


def test_notes_and_events_share_one_list_of_lines():
    timeline = Timeline(started_at=100.0)
    note = timeline.note(112.5, "sim: inject", "ring_5", "crash rate 0.03")

    assert note == "+00:12  sim: inject    ring_5    crash rate 0.03"
    assert timeline.lines == [note]


def test_events_need_the_rollouts_creation_as_their_anchor():
    with pytest.raises(RuntimeError, match="Anchor"):
        Timeline(started_at=0.0).new_events([event("CREATED", 0)])


def test_it_states_the_blast_radius_with_shares_of_the_fleet():
    by_ring = {
        "pilot": {"targeted": 100, "exposed": 100},
        "ring_5": {"targeted": 50, "exposed": 50},
        "ring_25": {"targeted": 0, "exposed": 0},
    }

    lines = format_blast_radius("v2.1_buggy", {"exposed": 150, "fleet": 1000, "spared": 850}, by_ring)

    assert lines == [
        "Exposed: 150 of 1000 devices received v2.1_buggy (15.0%); by ring: pilot 100, ring_5 50.",
        "Spared:  850 of 1000 devices never received it (85.0%).",
    ]


def test_an_empty_fleet_has_no_shares():
    assert format_blast_radius("v2.1", {"exposed": 0, "fleet": 0, "spared": 0}, {}) == [
        "Exposed: 0 of 0 devices received v2.1 (n/a); by ring: none.",
        "Spared:  0 of 0 devices never received it (n/a).",
    ]
