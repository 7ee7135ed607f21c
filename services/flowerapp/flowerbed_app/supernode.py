"""`flowerbed-supernode`: Flower's SuperNode with one fix for stopping a run.

Flower 1.41's SuperNode handles one message at a time: pull a message, then wait for
the next reply and push it. When a run is stopped while a SuperNode is still receiving
one of its messages (between storing it and confirming it), the confirmation fails,
the SuperNode logs "Run ID … is not in `RUNNING` status. Ignoring message" and goes
back to pulling — but the task it already created still starts a ClientApp, whose
reply arrives later. The next run's message is then paired with that stale reply,
and the next run's own reply is never pushed: its round hangs on that node until
the round timeout (seen as a run stuck at "Round 1 in progress" right after another
was stopped; tests/test_supernode.py reproduces it deterministically).

The fix keeps Flower's one-in, one-out pairing: when the confirmation is refused
because the run is no longer running, report the message as pulled, so the loop
waits for its ClientApp's reply and pushes it (the SuperLink refuses it; Flower
drops it) before pulling the next message. This is the same path a run stopped a
moment later — after the confirmation — already takes.

Optionally, its idle waits are shortened: with no message to pull, Flower's loop
sleeps 3 s before asking again, so a round's message waits 1.5 s on average before
a node even starts its ClientApp (bench/round_latency.py's profile). With
`FLOWERBED_SUPERNODE_POLL_SECONDS=p` every wait of that loop (the idle pull, the
wait for the ClientApp's reply) lasts at most p. Local mode sets 0.5 s (its nodes
and SuperLink share one machine); unset, Flower's waits stand.

Everything else is Flower's own `flower-supernode`: same flags, same process.
The patch targets the pinned 1.41 line and refuses to start if Flower's function
changed shape, rather than run silently unpatched.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from flwr.supercore.run import RunNotRunningException
from flwr.supernode import start_client_internal as flower_loop

PATCHED_FLAG = "_flowerbed_stop_race_fix"
POLL_ENV = "FLOWERBED_SUPERNODE_POLL_SECONDS"


class _PacedTime(ModuleType):
    """`time` as Flower's SuperNode loop sees it: every sleep lasts at most `poll` s.

    That module imports `time` only to sleep between polls (checked in install()), so
    swapping its module reference changes those waits and nothing else in the process."""

    def __init__(self, poll: float) -> None:
        super().__init__("time")
        self.poll = poll

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.poll))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def poll_seconds() -> float | None:
    raw = os.environ.get(POLL_ENV, "")
    if not raw:
        return None
    try:
        poll = float(raw)
    except ValueError:
        raise ValueError(f"{POLL_ENV} must be a number of seconds, got {raw!r}") from None
    if not 0 < poll <= 60:
        raise ValueError(f"{POLL_ENV} must be in (0, 60] seconds, got {raw!r}")
    return poll


def _patched(pull_and_store: Callable[..., int | None]) -> Callable[..., int | None]:
    @functools.wraps(pull_and_store)
    def pull_and_store_message(**kwargs: Any) -> int | None:
        confirm = kwargs["confirm_message_received"]
        refused: list[int] = []

        def confirm_or_note_refusal(run_id: int, message_id: str) -> None:
            try:
                confirm(run_id, message_id)
            except RunNotRunningException:
                refused.append(run_id)  # stored and tasked already: its ClientApp will reply
                raise

        run_id = pull_and_store(**{**kwargs, "confirm_message_received": confirm_or_note_refusal})
        if run_id is None and refused:
            return refused[0]
        return run_id

    setattr(pull_and_store_message, PATCHED_FLAG, True)
    return pull_and_store_message


def install(poll: float | None = None) -> None:
    """Wrap Flower's pull step in place (idempotent); with `poll`, cap the loop's sleeps."""
    if poll is not None:
        uses = set(re.findall(r"\btime\.(\w+)", inspect.getsource(flower_loop)))
        if uses - {"sleep"}:
            raise RuntimeError(f"flowerbed-supernode: Flower's SuperNode loop now uses time.{sorted(uses)}; update supernode.py")
        flower_loop.time = _PacedTime(poll)
    original = flower_loop._pull_and_store_message
    if getattr(original, PATCHED_FLAG, False):
        return
    params = inspect.signature(original).parameters
    if "confirm_message_received" not in params or "state" not in params:
        raise RuntimeError(
            "flowerbed-supernode: Flower's SuperNode loop changed "
            f"(_pull_and_store_message{inspect.signature(original)}); update flowerbed_app/supernode.py"
        )
    flower_loop._pull_and_store_message = _patched(original)


def main() -> None:
    install(poll_seconds())
    from flwr.supernode.cli import flower_supernode

    flower_supernode()


if __name__ == "__main__":
    main()
