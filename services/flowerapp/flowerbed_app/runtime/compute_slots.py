"""At most N ClientApps computing at once on one machine (local mode).

In local mode every SuperNode is a process on the same machine, and Flower starts
all of a round's ClientApps at once: 8 single-threaded trainers time-slicing 2 cores
trained ~12% fewer samples per second than the same 8 taking turns two at a time
(bench/client_throughput.py), and every one of them finished at the round's end.
A slot is an exclusive `flock` on one of N files in a directory the launcher shares
between its SuperNodes; a ClientApp holds one while it computes (partition load,
validation, training). The kernel drops the lock when the
holder exits, so a killed ClientApp never leaks a slot — which is why this is a set
of file locks (py-filelock) and not a named semaphore, which a SIGKILL would leave
decremented.

Off unless `FLOWERBED_COMPUTE_SLOTS` (a count) and `FLOWERBED_COMPUTE_SLOTS_DIR` are
set: in the compose deployment each SuperNode is its own container with its own CPUs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

SLOTS_ENV = "FLOWERBED_COMPUTE_SLOTS"
SLOTS_DIR_ENV = "FLOWERBED_COMPUTE_SLOTS_DIR"
POLL_SECONDS = 0.05


def configured() -> tuple[int, Path] | None:
    """(count, directory) from the environment, or None when slots are off."""
    raw = os.environ.get(SLOTS_ENV, "0") or "0"
    try:
        count = int(raw)
    except ValueError:
        raise ValueError(f"{SLOTS_ENV} must be a whole number of slots (0: off), got {raw!r}") from None
    directory = os.environ.get(SLOTS_DIR_ENV, "")
    return (count, Path(directory)) if count > 0 and directory else None


@contextlib.contextmanager
def compute_slot(count: int, directory: Path, poll: float = POLL_SECONDS) -> Iterator[int]:
    """Hold one of `count` slots under `directory` for the block; yields its index.

    Waiters poll every `poll` s rather than block on one file, so any slot that frees
    up is taken (blocking on a fixed file would queue behind one holder while another
    slot sits idle)."""
    directory.mkdir(parents=True, exist_ok=True)
    # preserve_lock_file: deleting the file on release would let a newcomer lock a fresh
    # inode while someone still holds the old one — two holders of one slot.
    locks = [FileLock(directory / f"slot-{index}.lock", thread_local=False, preserve_lock_file=True) for index in range(count)]
    start = os.getpid() % count  # spread first attempts so waiters don't all contend on slot 0
    while True:
        for offset in range(count):
            index = (start + offset) % count
            try:
                locks[index].acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield index
            finally:
                locks[index].release()
            return
        time.sleep(poll)


@contextlib.contextmanager
def maybe_compute_slot() -> Iterator[float]:
    """A slot when local mode configured them, else nothing; yields the wall-clock
    time the slot was acquired (for the round's per-phase timeline)."""
    slots = configured()
    if slots is None:
        yield time.time()
        return
    with compute_slot(*slots):
        yield time.time()
