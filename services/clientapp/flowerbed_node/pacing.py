"""How long a Flower loop waits before asking for work again: briefly while there is work,
longer and longer while there is none.

Flower's SuperNode asks the SuperLink for a message every 3 s, and a SuperExec asks its
Runtime API for a task every second (`FLWR_SUPEREXEC_TASK_POLL_INTERVAL`), whether or not
anything is happening. Short fixed waits make rounds fast and make an idle federation burn
CPU (3 idle local nodes: 27–38% of a core, BENCHMARKS.md); long ones do the opposite. A
`Pacer` waits `busy` seconds while work came in the last `linger` seconds, then doubles its
wait up to `idle`: a round's next message is picked up within `busy`, a federation left
alone settles at one request per `idle` seconds per loop.
"""

from __future__ import annotations

import math
import os
import time


class Pacer:
    def __init__(self, busy: float, idle: float, linger: float = 10.0) -> None:
        if not 0 < busy <= idle:
            raise ValueError(f"need 0 < busy ({busy}) <= idle ({idle})")
        self.busy = busy
        self.idle = idle
        self.linger = linger
        self._last_work = -math.inf
        self._wait = busy

    def mark_busy(self) -> None:
        """Work arrived (or was handed on): poll at the busy pace for the next `linger` s."""
        self._last_work = time.monotonic()
        self._wait = self.busy

    def next_wait(self) -> float:
        if time.monotonic() - self._last_work < self.linger:
            return self.busy
        self._wait = min(self.idle, self._wait * 2)
        return self._wait


def seconds_from_env(name: str, default: float | None, low: float = 0.01, high: float = 600.0) -> float | None:
    """A number of seconds from the environment, validated; `default` when unset or empty."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be between {low} and {high} seconds, got {raw!r}")
    return value
