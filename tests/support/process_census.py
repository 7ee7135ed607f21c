"""Which live processes belong to a test's federation: found by the data directory they name."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def processes_using(data_dir: Path) -> dict[int, str]:
    """pid → command line of every live process whose environment or command line names `data_dir`."""
    found = {}
    needle = str(data_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if needle in (entry / "environ").read_bytes() or needle in (entry / "cmdline").read_bytes():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
        except (OSError, IndexError):
            continue
    return found


def leftovers_after(data_dir: Path, seconds: float) -> dict[int, str]:
    """What still uses `data_dir` after up to `seconds` of waiting for it to go away."""
    deadline = time.monotonic() + seconds
    while (left := processes_using(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_all(pids: dict[int, str]) -> None:
    """SIGKILL what a failed test left behind (its own processes), so one failure leaks nothing."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
