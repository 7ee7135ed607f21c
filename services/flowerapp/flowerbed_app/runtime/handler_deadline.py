"""A ClientApp that outlives its round is stopped, and killed if it cannot stop.

Flower waits `round-timeout` for replies, then moves on — but leaves the ClientApp
process running. A hung ClientApp is worse than a slow one: its SuperNode handles one
message at a time, so that node takes no part in any later round or run until the
process ends. Only the ClientApp knows when it started and the round's timeout (from
the run config), and only it runs everywhere the app runs (local processes, compose
containers, any executor): so the deadline lives here.

The deadline is the server's: the message's creation time plus `round-timeout`, when
the server stops waiting (so the node is free for the next round as soon as the server
starts it). A clock running ahead could put that in the past; the handler then still
gets half the round-timeout from its start (`seconds_left`).

Two levels, both armed when a handler starts and disarmed when it returns:
- at the deadline SIGALRM raises `RoundTimeExceeded` in the handler, Flower turns it
  into an error reply, the process exits and the SuperNode moves on at once;
- `GRACE_SECONDS` later, if the handler is stuck where Python cannot raise (a C call that
  never returns, a deadlock holding the GIL), faulthandler's watchdog — a C thread that
  needs no GIL — prints every thread's stack to stderr and `_exit`s the process. Flower's
  SuperNode then answers the message for it ("ClientApp stopped responding") once the
  task's heartbeat has expired.
"""

from __future__ import annotations

import contextlib
import faulthandler
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

GRACE_SECONDS = 10.0


class RoundTimeExceeded(TimeoutError):
    """The handler ran past its round's timeout; the server no longer waits for it."""


def seconds_left(created_at: float, round_timeout: float, now: float | None = None) -> float:
    """Seconds until the server gives up on a message created at `created_at` (its clock),
    at least half of `round_timeout` and at most all of it."""
    remaining = created_at + round_timeout - (time.time() if now is None else now)
    return min(round_timeout, max(remaining, round_timeout / 2))


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Stop the block after `seconds`; end the process `GRACE_SECONDS` later if it cannot stop."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread; Flower runs handlers there
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise RoundTimeExceeded(f"{what} still running when its round timed out ({seconds:.0f} s after it started): stopped")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds + GRACE_SECONDS, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
