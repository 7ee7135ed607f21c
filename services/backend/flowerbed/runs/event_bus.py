"""In-process wake-ups for Server-Sent Events, fed by follower threads.

The database is the source of truth: a publish only tells the SSE handlers of one
run that new rows exist, and they read them from the DB. So a slow client, a missed
wake-up or a reconnect with Last-Event-ID can never lose or reorder an event.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict


class EventBus:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, run_id: str) -> asyncio.Event:
        wake = asyncio.Event()
        with self._lock:
            self._subscribers[run_id].add(wake)
        return wake

    def unsubscribe(self, run_id: str, wake: asyncio.Event) -> None:
        with self._lock:
            self._subscribers[run_id].discard(wake)
            if not self._subscribers[run_id]:
                del self._subscribers[run_id]

    def publish(self, run_id: str) -> None:
        """Safe from any thread: wakes every SSE stream of this run."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            wakes = list(self._subscribers.get(run_id, ()))
        for wake in wakes:
            loop.call_soon_threadsafe(wake.set)
