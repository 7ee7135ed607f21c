"""Serialized run details, reused while the run's revision (`RunHistory.revision`) is unchanged.

GET /training/{id} is what dashboards and scripts poll. Building it loads every round's
JSON (clients, timelines) and validates it with pydantic: milliseconds for a 10-round,
10-client run, most of a request's cost. `RunHistory.revision` moves with every committed
write to the run, so the body is built once per change and a hit costs no I/O at all.
Bounded LRU: old runs fall out. Used only from the async route, on the event loop's
thread, so it needs no lock.
"""

from __future__ import annotations

from collections import OrderedDict


class RunDetailCache:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[int, bytes]] = OrderedDict()

    def get(self, run_id: str, revision: int) -> bytes | None:
        entry = self._entries.get(run_id)
        if entry is None or entry[0] != revision:
            return None
        self._entries.move_to_end(run_id)
        return entry[1]

    def put(self, run_id: str, revision: int, body: bytes) -> None:
        self._entries[run_id] = (revision, body)
        self._entries.move_to_end(run_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
