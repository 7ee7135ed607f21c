"""Follows one Flower run's log stream and turns it into Flowerbed events.

StreamLogs delivers text chunks that may split a line; we keep the unfinished tail
until its newline arrives, and hand it to `on_log` with every chunk so the caller can
store it beside the cursor. Reading resumes from the last timestamp with that tail, so
a follower that restarts (or a backend that was killed mid-line) continues without gaps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flowerbed.flower_control import FlowerControl
from flowerbed_app.progress_events import parse_events


@dataclass
class LogCursor:
    """Where reading stopped: timestamp plus the unfinished last line."""

    after_timestamp: float = 0.0
    partial: str = ""
    seen_seq: set[int] = field(default_factory=set)

    def feed(self, text: str, latest: float) -> tuple[list[dict[str, Any]], str]:
        """New complete events and the complete log text of this chunk."""
        data = self.partial + text
        complete, _, self.partial = data.rpartition("\n")
        self.after_timestamp = max(self.after_timestamp, latest)
        events = []
        for event in parse_events(complete):
            seq = int(event.get("seq", 0))
            if seq and seq in self.seen_seq:
                continue
            self.seen_seq.add(seq)
            events.append(event)
        return events, (complete + "\n") if complete else ""


def follow(
    control: FlowerControl,
    flower_run_id: int,
    on_event: Callable[[dict[str, Any]], None],
    on_log: Callable[[str], None] | None = None,
    cursor: LogCursor | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    poll: float = 0.5,
) -> str:
    """Read until the run is finished on the SuperLink; returns Flower's final status.

    `on_log(complete_text)` is called for every chunk, also one that only extends the
    unfinished line (then with ""), after `cursor` has moved: cursor and tail are what to store.
    """

    def consume(text: str, latest: float) -> None:
        events, log_text = cursor.feed(text, latest)
        if on_log:
            on_log(log_text)
        for event in events:
            on_event(event)

    cursor = cursor or LogCursor()
    while True:
        for text, latest in _chunks(control, flower_run_id, cursor.after_timestamp):
            consume(text, latest)
            if should_stop():
                return "detached"
        run = control.get_run(flower_run_id)
        if run is None:
            return "unknown"
        if run.finished:
            # One last read: logs written just before the status flipped. Nothing follows
            # it, so an unfinished last line is complete as it is.
            for text, latest in _chunks(control, flower_run_id, cursor.after_timestamp):
                consume(text, latest)
            if cursor.partial:  # stored as a chunk of its own, just after the last one read
                consume("\n", cursor.after_timestamp + 1e-6)
            return f"{run.status}:{run.sub_status}"
        if should_stop():
            return "detached"
        time.sleep(poll)


def _chunks(control: FlowerControl, run_id: int, after: float) -> Iterator[tuple[str, float]]:
    try:
        yield from control.stream_logs(run_id, after)
    except Exception:  # stream cut (SuperLink restart, timeout): the caller polls again
        return
