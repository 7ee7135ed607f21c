"""When did this process start? For the per-phase timeline of a round.

A ClientApp lives for one message, so the gap between the SuperNode receiving a
message and the app's code running (spawn + imports) is a large, invisible share of
each round. The kernel knows the start time; we read it instead of guessing.
"""

from __future__ import annotations

import os
import time


def process_started_at(pid: int | None = None) -> float:
    """Wall-clock start time of a process (Linux /proc); now if unavailable."""
    try:
        with open(f"/proc/{pid or os.getpid()}/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()
