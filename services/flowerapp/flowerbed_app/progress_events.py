"""The structured progress lines a ServerApp prints, and their parser.

The ServerApp's stdout is the one channel Flower carries from a run to anyone
watching (Control API `StreamLogs`), and the SuperLink's database keeps it, so a
restarted backend can re-read it. Each event is one line: a fixed prefix and a JSON
object. Producer and consumers share this module so the format is defined once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

PREFIX = "FLOWERBED_EVENT "
SCHEMA_VERSION = 1

EVENT_TYPES = (
    "run_started",
    "waiting_for_nodes",
    "round_started",
    "round_finished",
    "checkpoint_saved",
    "run_finished",
    "run_failed",
)


class EventEmitter:
    """Prints events for one run, numbering them so consumers can de-duplicate."""

    def __init__(self, run_id: str, flower_run_id: int) -> None:
        self.run_id = run_id
        self.flower_run_id = flower_run_id
        self.seq = 0

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event!r}")
        self.seq += 1
        record = {
            "v": SCHEMA_VERSION,
            "event": event,
            "seq": self.seq,
            "ts": time.time(),
            "run_id": self.run_id,
            "flower_run_id": self.flower_run_id,
            **fields,
        }
        print(PREFIX + json.dumps(record, separators=(",", ":"), default=_jsonable), flush=True)
        return record


def parse_events(text: str) -> Iterator[dict[str, Any]]:
    """Every event in a chunk of log output; other lines and broken JSON are skipped."""
    for line in text.splitlines():
        index = line.find(PREFIX)
        if index < 0:
            continue
        try:
            record = json.loads(line[index + len(PREFIX) :])
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") in EVENT_TYPES:
            yield record


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
