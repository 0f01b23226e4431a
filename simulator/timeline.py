"""A rollout's story as readable lines: the timeline the scenario runner prints as it happens.

    +00:03  START          pilot     Deploying v2.1_buggy to 10 devices of pilot. [by scenario]
    +00:14  sim: inject    ring_5    crash rate 0.03 on every device of ring_5 (immediate)
    +00:42  AUTO_ROLLBACK  ring_5    Critical: boot success rate 86.0% is below 97.0%.

One line per thing that happened: the time since the run began, what happened, the ring it
happened in, and why. Three sources feed it, told apart by the second column: the rollout's own
events (upper case, as the API names them: PROMOTE by a person, AUTO_ROLLBACK by SafeRoll), the
gate decisions the runner saw change ("gates: PAUSE"), and what the runner did to the simulated
fleet ("sim: inject") or has to say ("scenario").

Rollout events are placed by the server's timestamps, anchored on the rollout's CREATED event, so
an event polled a second late is not shown a second late, and a server whose clock differs from
this machine's still gives a consistent timeline.

Pure: no Django, no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

ACTION_WIDTH = 14
RING_WIDTH = 9
NO_RING = "-"
SAFEROLL_ACTOR = "saferoll"


def format_elapsed(seconds: float) -> str:
    """+MM:SS, or +H:MM:SS from an hour on; never negative (clock jitter at the very start)."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"+{hours}:{minutes:02d}:{secs:02d}" if hours else f"+{minutes:02d}:{secs:02d}"


def format_line(elapsed: float, what: str, ring: str | None, text: str) -> str:
    """One timeline line. The text is kept whole (the reason is the point of the line), on one line."""
    return (
        f"{format_elapsed(elapsed)}  {what:<{ACTION_WIDTH}} {ring or NO_RING:<{RING_WIDTH}} "
        f"{' '.join(text.split())}"
    )


def parse_timestamp(value: str) -> dt.datetime:
    """An ISO 8601 timestamp of the API ("…Z" or "…+00:00") as an aware datetime."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def event_ring(event: Mapping[str, Any]) -> str | None:
    """The ring an event is about: where the rollout went (START, PROMOTE, RESUME), else where it was."""
    return event.get("to_ring") or event.get("from_ring") or None


def event_text(event: Mapping[str, Any]) -> str:
    """The event's reason; a person's action also says who took it (SafeRoll's carry AUTO_ in their
    name, or are plainly its own, like COMPLETED)."""
    reason = " ".join(str(event.get("reason") or "").split()) or "(no reason given)"
    actor = str(event.get("actor") or "")
    if actor and actor != SAFEROLL_ACTOR:
        return f"{reason} [by {actor}]"
    return reason


def format_event(event: Mapping[str, Any], elapsed: float) -> str:
    return format_line(elapsed, str(event.get("action") or "?"), event_ring(event), event_text(event))


class Timeline:
    """The lines of one run, in the order they were learnt, and which rollout events are new.

    `started_at` is when the run began on this machine's clock (epoch seconds). Rollout events
    need `anchor(created_at, local_time)` first: the CREATED timestamp on the server's clock and
    the moment here that it corresponds to."""

    def __init__(self, started_at: float):
        self.started_at = started_at
        self.lines: list[str] = []
        self._server_zero: dt.datetime | None = None
        self._local_zero = started_at
        self._shown = 0

    def note(self, now: float, what: str, ring: str | None, text: str) -> str:
        """A line about something seen or done on this side: the fleet, the gates, the runner."""
        line = format_line(now - self.started_at, what, ring, text)
        self.lines.append(line)
        return line

    def anchor(self, created_at: str, local_time: float) -> None:
        """The rollout's creation time on the server's clock is `local_time` on ours (set once)."""
        if self._server_zero is None:
            self._server_zero = parse_timestamp(created_at)
            self._local_zero = local_time

    @property
    def anchored(self) -> bool:
        return self._server_zero is not None

    def to_local(self, timestamp: str) -> float:
        """A server timestamp as epoch seconds on this machine's clock."""
        if self._server_zero is None:
            raise RuntimeError("Anchor the timeline on the rollout's creation first.")
        return self._local_zero + (parse_timestamp(timestamp) - self._server_zero).total_seconds()

    def new_events(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        """Lines for the events not shown yet. The API lists a rollout's events oldest first and
        never changes or removes one, so "new" is everything past the count already shown."""
        events = list(events)
        fresh, self._shown = events[self._shown :], max(self._shown, len(events))
        lines = [format_event(event, self.to_local(event["timestamp"]) - self.started_at) for event in fresh]
        self.lines.extend(lines)
        return lines


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def ring_counts(by_ring: Mapping[str, Mapping[str, int]], key: str) -> str:
    """ "pilot 10, ring_5 5": the rings where `key` counts something, in the rollout's order."""
    parts = [f"{ring} {counts.get(key, 0)}" for ring, counts in by_ring.items() if counts.get(key, 0)]
    return ", ".join(parts) if parts else "none"


def format_blast_radius(
    version: str, blast: Mapping[str, int], by_ring: Mapping[str, Mapping[str, int]]
) -> list[str]:
    """Who received the release and who was spared, with shares of the fleet."""
    fleet = int(blast.get("fleet", 0))
    exposed = int(blast.get("exposed", 0))
    spared = int(blast.get("spared", max(fleet - exposed, 0)))
    return [
        f"Exposed: {exposed} of {fleet} devices received {version} ({percent(exposed, fleet)}); "
        f"by ring: {ring_counts(by_ring, 'exposed')}.",
        f"Spared:  {spared} of {fleet} devices never received it ({percent(spared, fleet)}).",
    ]
