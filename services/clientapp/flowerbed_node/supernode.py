"""`flowerbed-supernode`: Flower's SuperNode with a fix for stopping a run, and no idle waits.

Flower 1.41's SuperNode handles one message at a time: pull a message, then wait for
the next reply and push it. When a run is stopped while a SuperNode is still receiving
one of its messages (between storing it and confirming it), the confirmation fails,
the SuperNode logs "Run ID … is not in `RUNNING` status. Ignoring message" and goes
back to pulling — but the task it already created still starts a ClientApp, whose
reply arrives later. The next run's message is then paired with that stale reply,
and the next run's own reply is never pushed: its round hangs on that node until
the round timeout (tests/e2e/test_supernode.py reproduces it deterministically). The fix
keeps Flower's one-in, one-out pairing: when the confirmation is refused because the
run is no longer running, the message counts as pulled, so the loop waits for its
ClientApp's reply and pushes it (the SuperLink refuses it; Flower drops it) before
pulling the next message — the path a run stopped a moment later already takes.

Its waits are Flower's fixed sleeps made to follow the work:
- Asking the SuperLink for a message: Flower sleeps 3 s between empty pulls. Here a
  `Pacer` waits `FLOWERBED_SUPERNODE_POLL_SECONDS` (default 0.5) for a while after
  each message, then backs off to `FLOWERBED_SUPERNODE_IDLE_POLL_SECONDS` (default
  Flower's 3): a round's messages are picked up quickly, an idle node costs what
  Flower's does.
- Waiting for its ClientApp's reply and the reply's objects: Flower sleeps 0.5 s
  between looks at its own in-memory state. Here those waits end as soon as the
  state changes (a message or object stored), so a reply leaves the node at once.
- Pulling a message's objects from the SuperLink: when the message comes before its
  objects are all there (the ServerApp pushes a message, then its objects), Flower waits
  1 s before asking again, doubling up to 10 s. Here 50 ms, doubling up to 0.25 s: the
  doubling from 50 ms alone (50, 100, 200, 400 ms) made a node receive a round's model
  ~0.9 s after it began to pull it, mostly asleep (bench/first_batch.py). The node's
  patience stays Flower's order of magnitude: no cap on tries, Flower's 2 h `max_time`.
- Its executor asking for a task (`AcquireTask` on the Runtime API): answered as soon
  as a task exists, held up to `TASK_HOLD_SECONDS` otherwise, instead of "nothing"
  at once: the executor needs no fast polling to start a ClientApp without delay.
  Flower's own `flower-superexec` works unchanged against it (its client waits 30 s).

`FLOWERBED_TRUSTED_ENTITIES` (a file path) adds `--trusted-entities FILE`: a compose file cannot
pass a flag only when an operator set it, an environment variable can be empty.

Everything else is Flower's own `flower-supernode`: same flags, same process. The
patches target the pinned 1.41 line and refuse to start if Flower's functions changed
shape, rather than run silently unpatched.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from flwr.proto.runtime_pb2 import AcquireTaskResponse  # pylint: disable=E0611
from flwr.supercore.exit import add_exit_handler
from flwr.supercore.run import RunNotRunningException
from flwr.supernode import start_client_internal as flower_loop
from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState
from flwr.supernode.servicer.runtime import runtime_handlers

from flowerbed_node.pacing import Pacer, seconds_from_env

PATCHED_FLAG = "_flowerbed_patched"
POLL_ENV = "FLOWERBED_SUPERNODE_POLL_SECONDS"
IDLE_POLL_ENV = "FLOWERBED_SUPERNODE_IDLE_POLL_SECONDS"
DEFAULT_POLL, DEFAULT_IDLE_POLL = 0.5, 3.0
TASK_HOLD_SECONDS = 5.0
OBJECT_PULL_BACKOFF_SECONDS = 0.05
OBJECT_PULL_BACKOFF_CAP_SECONDS = 0.25
# Flower's loop functions whose sleeps wait on this node's own state, not on the network.
_LOCAL_WAITS = ("_push_messages", "yield_object_contents")


class StateChanges:
    """A counter of stores into the node's state, to wait on instead of sleeping; and
    whether the node is in its pull step (receiving a message and its objects)."""

    def __init__(self) -> None:
        self.generation = 0
        self.closed = False
        self.receiving = False
        self._cond = threading.Condition()

    def notify(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait_after(self, seen: int, timeout: float) -> int:
        """Until the generation moves past `seen` (or timeout, or close); returns it."""
        with self._cond:
            self._cond.wait_for(lambda: self.generation != seen or self.closed, timeout)
            return self.generation

    def close(self) -> None:
        """Release every waiter (shutdown must not wait for a held request)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class _NodeTime(ModuleType):
    """`time` as Flower's SuperNode loop sees it (it uses only `time.sleep`, checked)."""

    def __init__(self, pacer: Pacer, changes: StateChanges) -> None:
        super().__init__("time")
        self.pacer = pacer
        self.changes = changes
        self.seen = changes.generation

    def sleep(self, seconds: float) -> None:
        if sys._getframe(1).f_code.co_name in _LOCAL_WAITS:
            self.seen = self.changes.wait_after(self.seen, seconds)
        else:  # the idle wait between two pulls from the SuperLink
            time.sleep(self.pacer.next_wait())

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _patched_pull(
    pull_and_store: Callable[..., int | None], on_message: Callable[[], None], changes: StateChanges
) -> Callable[..., int | None]:
    @functools.wraps(pull_and_store)
    def pull_and_store_message(**kwargs: Any) -> int | None:
        changes.receiving = True  # its task exists before its objects are in (Flower creates it first)
        try:
            return _pull(**kwargs)
        finally:
            changes.receiving = False
            changes.notify()

    def _pull(**kwargs: Any) -> int | None:
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
            run_id = refused[0]
        if run_id is not None:
            on_message()
        return run_id

    setattr(pull_and_store_message, PATCHED_FLAG, True)
    return pull_and_store_message


def _notifying(method: Callable[..., Any], changes: StateChanges) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            changes.notify()

    return wrapper


def _held(acquire_task: Callable[..., Any], changes: StateChanges, hold: float) -> Callable[..., Any]:
    """AcquireTask answered when a task exists, held up to `hold` s otherwise. A task is not
    handed out while the node is still receiving its message: its ClientApp would find the
    objects missing and back off for a second (Flower's pull retry) before asking again."""

    @functools.wraps(acquire_task)
    def held_acquire_task(request: Any, state: Any) -> Any:
        deadline = time.monotonic() + hold
        while True:
            seen = changes.generation
            if not changes.receiving and (response := acquire_task(request, state)).HasField("task"):
                return response
            remaining = deadline - time.monotonic()
            if remaining <= 0 or changes.closed:
                return AcquireTaskResponse()
            changes.wait_after(seen, remaining)

    return held_acquire_task


def _refuse(what: str) -> RuntimeError:
    return RuntimeError(f"flowerbed-supernode: Flower's SuperNode loop changed ({what}); update flowerbed_node/supernode.py")


def check_flower() -> None:
    """Raise if any Flower function these patches rely on changed shape."""
    params = inspect.signature(flower_loop._pull_and_store_message).parameters
    if "confirm_message_received" not in params or "state" not in params:
        raise _refuse(f"_pull_and_store_message{inspect.signature(flower_loop._pull_and_store_message)}")
    source = inspect.getsource(flower_loop)
    if set(re.findall(r"\btime\.(\w+)", source)) != {"sleep"} or not all(f"def {name}(" in source for name in _LOCAL_WAITS):
        raise _refuse("its waits are no longer time.sleep in start_client_internal / _push_messages")
    if list(inspect.signature(runtime_handlers.acquire_task).parameters) != ["request", "state"]:
        raise _refuse(f"runtime_handlers.acquire_task{inspect.signature(runtime_handlers.acquire_task)}")
    if not {"initial_backoff", "backoff_cap", "max_tries_per_object", "max_time"} <= set(
        inspect.signature(flower_loop.pull_objects).parameters
    ):
        raise _refuse(f"pull_objects{inspect.signature(flower_loop.pull_objects)}")
    for method in ("create_task", "store_message", "store_object"):
        if not callable(getattr(InMemoryNodeState, method, None)):
            raise _refuse(f"InMemoryNodeState.{method} is gone")


def install(pacer: Pacer | None = None, hold: float = TASK_HOLD_SECONDS) -> StateChanges:
    """Patch Flower's SuperNode in place; idempotent. Returns the state-change signal."""
    if getattr(flower_loop._pull_and_store_message, PATCHED_FLAG, False):
        return flower_loop.time.changes
    check_flower()
    pacer = pacer or Pacer(DEFAULT_POLL, DEFAULT_IDLE_POLL)
    changes = StateChanges()
    flower_loop.time = _NodeTime(pacer, changes)
    flower_loop.pull_objects = functools.partial(
        flower_loop.pull_objects,
        initial_backoff=OBJECT_PULL_BACKOFF_SECONDS,
        backoff_cap=OBJECT_PULL_BACKOFF_CAP_SECONDS,
        max_tries_per_object=None,
    )
    flower_loop._pull_and_store_message = _patched_pull(flower_loop._pull_and_store_message, pacer.mark_busy, changes)
    for method in ("create_task", "store_message", "store_object"):
        setattr(InMemoryNodeState, method, _notifying(getattr(InMemoryNodeState, method), changes))
    runtime_handlers.acquire_task = _held(runtime_handlers.acquire_task, changes, hold)
    add_exit_handler(changes.close, run_before_force_exit=True)
    return changes


def pacer_from_env() -> Pacer:
    busy = seconds_from_env(POLL_ENV, DEFAULT_POLL, high=60.0)
    idle = seconds_from_env(IDLE_POLL_ENV, max(DEFAULT_IDLE_POLL, busy or 0), high=600.0)
    assert busy is not None and idle is not None
    return Pacer(busy, idle)


def trusted_entities_args(argv: list[str], environ: dict[str, str]) -> list[str]:
    """argv plus `--trusted-entities FILE` when FLOWERBED_TRUSTED_ENTITIES names one (and argv has none)."""
    path = environ.get("FLOWERBED_TRUSTED_ENTITIES", "").strip()
    if not path or "--trusted-entities" in argv:
        return argv
    return [*argv, "--trusted-entities", path]


def main() -> None:
    sys.argv = trusted_entities_args(sys.argv, dict(os.environ))
    install(pacer_from_env())
    from flwr.supernode.cli import flower_supernode

    flower_supernode()


if __name__ == "__main__":
    main()
