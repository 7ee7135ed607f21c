"""Stopping process groups: a signal, a grace period, then SIGKILL for whatever is left.

Every Flower process Flowerbed starts (and every server the tests and benchmarks start)
runs in a session of its own, so that stopping it also ends what it spawned. Stopping
such a group well takes more than `Popen.wait()`: the leader may exit while children
of the group live on, a stuck server must not hang a teardown, and zombies of our own
count as gone. One toolkit for the launcher, `flowerbed down`, the tests and the
benchmarks, so a fix here reaches all of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

# How long a SIGKILLed group may take to be gone (uninterruptible I/O can hold a process).
KILL_SECONDS = 5.0


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to a process group; a group that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """True while any member of the group runs (our own unreaped zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def reap(pid: int) -> None:
    """Collect our child's exit status if it has one, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_groups(pgids: Iterable[int], grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Signal every group at once, give them `grace` seconds together, SIGKILL what outlives it."""
    groups = list(pgids)
    for pgid in groups:
        signal_group(pgid, sig)
    deadline = time.monotonic() + grace
    for pgid in groups:
        while group_alive(pgid) and time.monotonic() < deadline:
            reap(pgid)
            time.sleep(0.05)
        if group_alive(pgid):
            signal_group(pgid, signal.SIGKILL)
            # SIGKILL is not instant: a process on its way out still shows as running for a moment.
            killed = time.monotonic() + KILL_SECONDS
            while group_alive(pgid) and time.monotonic() < killed:
                reap(pgid)
                time.sleep(0.02)
        reap(pgid)
