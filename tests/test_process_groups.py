"""`process_groups.stop_groups`: the one way the launcher, `flowerbed down`, tests and benches stop a group."""

from __future__ import annotations

import subprocess
import sys
import time

from flowerbed import process_groups

# A leader that exits on SIGTERM, with a child in its group that ignores SIGTERM: what a
# server with a stuck worker looks like. Prints the child's pid once both are set up.
_STUBBORN_GROUP = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ok', flush=True); time.sleep(120)"],
    stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(120)
"""


def _start_group() -> tuple[subprocess.Popen[str], int]:
    leader = subprocess.Popen([sys.executable, "-c", _STUBBORN_GROUP], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert leader.stdout is not None
    return leader, int(leader.stdout.readline())


def test_a_member_that_ignores_sigterm_is_killed_after_the_grace_period():
    leader, child = _start_group()
    try:
        assert process_groups.group_alive(leader.pid)
        started = time.monotonic()
        process_groups.stop_groups([leader.pid], grace=1.0)
        took = time.monotonic() - started
        assert not process_groups.group_alive(leader.pid), "a member outlived stop_groups"
        assert leader.poll() is not None
        assert took >= 1.0, "the stubborn member cannot have gone before the grace period ended"
        assert not _running(child), "the member that ignored SIGTERM still runs"
    finally:
        process_groups.signal_group(leader.pid, 9)
        leader.wait(timeout=10)


def test_groups_that_are_gone_or_never_existed_are_not_errors():
    done = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    done.wait()
    process_groups.stop_groups([done.pid], grace=0.1)
    assert not process_groups.group_alive(done.pid)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
