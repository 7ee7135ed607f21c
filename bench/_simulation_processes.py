"""The simulation benchmark's processes: which of them are ours (SuperLink, Ray, actors), their memory and CPU
sampled while it runs, and stopping every one of them afterwards (Ray's processes live in their own groups)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _harness import Sampler, cpu_seconds, memory

MIB = 1024 * 1024


def _proc_table(marker: str) -> dict[int, tuple[int, str, bool]]:
    """pid → (parent pid, command line, whether its command line or environment names
    `marker`) of every process we can read."""
    needle = marker.encode()
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            raw = (entry / "cmdline").read_bytes()
            marked = needle in raw or needle in (entry / "environ").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        table[int(entry.name)] = (ppid, raw.replace(b"\0", b" ").decode(errors="replace").strip(), marked)
    return table


def our_processes(root_pid: int, marker: str) -> dict[int, str]:
    """The processes this benchmark started: descendants of the SuperLink, and anything
    whose command line or environment names our scratch directory (every process of the
    simulation inherits RAY_TMPDIR=<scratch>, Ray's workers too, even if orphaned)."""
    table = _proc_table(marker)
    ours = {pid for pid, (_, _, marked) in table.items() if marked}
    if root_pid in table:
        ours.add(root_pid)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    stack = list(ours)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in ours:
                ours.add(child)
                stack.append(child)
    return {pid: table[pid][1] for pid in ours}


def role_of(cmdline: str) -> str:
    if "flower-superlink" in cmdline:
        return "superlink"
    if "flower-superexec" in cmdline:
        return "superexec"
    if "flwr-simulation" in cmdline:
        return "simulation driver (ServerApp)"
    if cmdline.startswith("ray::ClientAppActor"):
        return "ray ClientApp actors"
    if cmdline.startswith("ray::"):
        return "ray idle workers"
    if "gcs_server" in cmdline:
        return "ray gcs_server"
    if "raylet" in cmdline.split(" ", 1)[0]:
        return "raylet"
    return "ray other (agents, monitors)"


@dataclass
class MemorySampler(Sampler):
    """Samples every process of the simulation once a second; keeps the peak total PSS
    (and each role's RSS at that moment), the most ClientApp actors seen at once and the
    CPU time each process had used at its last sample."""

    root_pid: int
    marker: str
    peak_pss: int = 0
    peak_by_role: dict[str, dict[str, float]] = field(default_factory=dict)
    max_actors: int = 0
    cpu: dict[int, tuple[str, float]] = field(default_factory=dict)

    def sample(self) -> None:
        by_role: dict[str, list[int]] = {}
        total_pss = 0
        for pid, cmdline in our_processes(self.root_pid, self.marker).items():
            rss, pss = memory(pid)
            role = role_of(cmdline)
            self.cpu[pid] = (role, cpu_seconds(pid))
            row = by_role.setdefault(role, [0, 0, 0])
            row[0] += 1
            row[1] += rss
            row[2] += pss
            total_pss += pss
        self.max_actors = max(self.max_actors, by_role.get("ray ClientApp actors", [0])[0])
        if total_pss > self.peak_pss:
            self.peak_pss = total_pss
            self.peak_by_role = {
                role: {"processes": n, "rss_mib": round(rss / MIB, 1), "pss_mib": round(pss / MIB, 1)}
                for role, (n, rss, pss) in sorted(by_role.items())
            }

    def cpu_by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for role, seconds in self.cpu.values():
            totals[role] = totals.get(role, 0.0) + seconds
        return {role: round(seconds, 1) for role, seconds in sorted(totals.items())}


def _signal_all(pids: Iterator[int] | list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_everything(superlink: subprocess.Popen[bytes], marker: str, grace: float = 15.0) -> list[str]:
    """SIGTERM the SuperLink's process group, then whatever of ours is left (Ray's
    processes live in their own groups), SIGKILL what outlives grace. Returns the roles
    of the processes that were still alive after the SuperLink had exited."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(superlink.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        superlink.wait(timeout=grace)
    if superlink.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(superlink.pid, signal.SIGKILL)
        superlink.wait()
    leftovers = {pid: cmd for pid, cmd in our_processes(superlink.pid, marker).items() if pid != superlink.pid}
    if leftovers:
        _signal_all(list(leftovers), signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and our_processes(-1, marker):
            time.sleep(0.2)
        _signal_all(list(our_processes(-1, marker)), signal.SIGKILL)
    return sorted(role_of(cmd) for cmd in leftovers.values())
