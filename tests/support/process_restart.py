"""Kill a process of a local federation and start it again exactly as it was (fault-injection tests only).

The command line and environment are read from /proc before the kill, so the new process
is the same program with the same flags (port, `--database`), logging to the same file.
The federation's record is updated, so teardown stops the new process group too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from flowerbed.local import launcher


def _argv_env(pid: int) -> tuple[list[str], dict[str, str]]:
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    env = dict(item.decode().split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
    return argv, env


def kill(federation: launcher.Federation, name: str) -> tuple[list[str], dict[str, str]]:
    """SIGKILL one process group of the federation; returns what it takes to start it again."""
    (process,) = [p for p in federation.processes if p.name == name]
    argv, env = _argv_env(process.pid)
    launcher.kill_process(process)
    return argv, env


def start_again(federation: launcher.Federation, name: str, argv: list[str], env: dict[str, str]) -> None:
    (process,) = [p for p in federation.processes if p.name == name]
    with open(process.log, "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    process.pid = proc.pid
    federation.save()
