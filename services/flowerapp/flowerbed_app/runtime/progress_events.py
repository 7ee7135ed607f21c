"""The structured progress lines a ServerApp prints, and their parser.

The ServerApp's stdout is the one channel Flower carries from a run to anyone
watching (Control API `StreamLogs`), and the SuperLink's database keeps it, so a
restarted backend can re-read it. Each event is one line: a fixed prefix and a JSON
object. Producer and consumers share this module so the format is defined once.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

PREFIX = "FLOWERBED_EVENT "
SCHEMA_VERSION = 1

EVENT_TYPES = (
    "run_started",
    "waiting_for_nodes",
    "data_described",  # what each node holds: data-source=node before round 1; partitions once a node has replied
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
        # The ServerApp emits from its main loop and from its evaluation thread: numbering
        # and printing happen together, so lines appear in seq order.
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event!r}")
        with self._lock:
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
            print(PREFIX + to_json(record), flush=True)
        return record


def to_json(value: Any) -> str:
    """Strict JSON: a diverged run's NaN or infinite losses become null.

    Python's json writes NaN/Infinity, which is not JSON: browsers' JSON.parse rejects it
    and PostgreSQL's json type refuses to store it.
    """
    return json.dumps(finite(value), separators=(",", ":"), default=_jsonable, allow_nan=False)


def finite(value: Any) -> Any:
    """`value` with every non-finite float (also inside dicts and lists) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # NumPy/torch scalars
        return finite(value.item())
    return value


def parse_events(text: str) -> Iterator[dict[str, Any]]:
    """Every event in a chunk of log output, non-finite numbers as None; other lines and broken JSON are skipped."""
    for line in text.splitlines():
        index = line.find(PREFIX)
        if index < 0:
            continue
        try:
            record = json.loads(line[index + len(PREFIX) :])
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") in EVENT_TYPES:
            yield finite(record)  # lines from older apps may still carry NaN


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
