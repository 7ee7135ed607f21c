"""Serialized run details, reused while the run's revision in the database is unchanged.

GET /training/{id} is what dashboards and scripts poll. Building it loads every round's
JSON (clients, timelines) and validates it with pydantic: milliseconds for a 10-round,
10-client run, most of a request's cost. `RunHistory.revision` moves with every committed
write to the run, so the body is built once per change and a hit costs no I/O at all.
Bounded LRU: old runs fall out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class RunDetailCache:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()  # sync routes run in FastAPI's thread pool

    def get(self, run_id: str, revision: int) -> bytes | None:
        with self._lock:
            entry = self._entries.get(run_id)
            if entry is None or entry[0] != revision:
                return None
            self._entries.move_to_end(run_id)
            return entry[1]

    def put(self, run_id: str, revision: int, body: bytes) -> None:
        with self._lock:
            self._entries[run_id] = (revision, body)
            self._entries.move_to_end(run_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
