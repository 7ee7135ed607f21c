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

Everything else is Flower's own `flower-supernode`: same flags, same process.
The patch targets the pinned 1.41 line and refuses to start if Flower's function
changed shape, rather than run silently unpatched.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from flwr.supercore.run import RunNotRunningException
from flwr.supernode import start_client_internal as flower_loop

PATCHED_FLAG = "_flowerbed_stop_race_fix"


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


def install() -> None:
    """Wrap Flower's pull step in place (idempotent)."""
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
    install()
    from flwr.supernode.cli import flower_supernode

    flower_supernode()


if __name__ == "__main__":
    main()
