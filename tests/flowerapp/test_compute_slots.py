"""Compute slots across real processes: never more holders than slots, and a killed
holder's slot comes back (the kernel drops its flock)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowerbed_app.runtime.compute_slots import compute_slot, configured

HOLD = """
import json, sys, time
from pathlib import Path
from flowerbed_app.runtime.compute_slots import compute_slot
with compute_slot(int(sys.argv[1]), Path(sys.argv[2]), poll=0.01) as index:
    start = time.time()
    print("holding", flush=True)
    time.sleep(float(sys.argv[3]))
    print(json.dumps({"index": index, "start": start, "end": time.time()}), flush=True)
"""


def _holder(count: int, directory: Path, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(count), str(directory), str(seconds)], stdout=subprocess.PIPE, text=True
    )


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    current = peak = 0
    for _, delta in edges:  # an end sorts before a start at the same instant
        current += delta
        peak = max(peak, current)
    return peak


def test_no_more_holders_than_slots(tmp_path):
    procs = [_holder(2, tmp_path, 0.3) for _ in range(5)]
    outputs = [json.loads(p.communicate(timeout=60)[0].splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert {o["index"] for o in outputs} <= {0, 1}
    intervals = [(o["start"], o["end"]) for o in outputs]
    assert _max_overlap(intervals) == 2  # both slots used, never a third holder
    for index in (0, 1):  # holders of one slot never overlap
        same = sorted((o["start"], o["end"]) for o in outputs if o["index"] == index)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(same))


def test_killed_holder_frees_its_slot(tmp_path):
    victim = _holder(1, tmp_path, 60)
    assert victim.stdout is not None and victim.stdout.readline().strip() == "holding"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    started = time.monotonic()
    with compute_slot(1, tmp_path, poll=0.01) as index:
        assert index == 0
    assert time.monotonic() - started < 5


def test_waiter_takes_whichever_slot_frees_first(tmp_path):
    long_holder, short_holder = _holder(2, tmp_path, 30), _holder(2, tmp_path, 0.2)
    try:
        for proc in (long_holder, short_holder):
            assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        # Not communicate(): with a timeout it reads the pipe itself and misses what readline() has
        # already buffered — under load both lines of the short holder arrive in one read.
        short_holder.wait(timeout=30)
        short = json.loads(short_holder.stdout.read().splitlines()[-1])
        with compute_slot(2, tmp_path, poll=0.01) as index:
            assert index == short["index"]
    finally:
        long_holder.kill()
        long_holder.wait(timeout=10)


def test_configured_reads_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWERBED_COMPUTE_SLOTS", raising=False)
    assert configured() is None
    monkeypatch.setenv("FLOWERBED_COMPUTE_SLOTS", "3")
    monkeypatch.setenv("FLOWERBED_COMPUTE_SLOTS_DIR", str(tmp_path))
    assert configured() == (3, tmp_path)
    monkeypatch.setenv("FLOWERBED_COMPUTE_SLOTS", "0")
    assert configured() is None


def test_configured_names_the_variable_when_not_a_number(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWERBED_COMPUTE_SLOTS", "auto")
    monkeypatch.setenv("FLOWERBED_COMPUTE_SLOTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="FLOWERBED_COMPUTE_SLOTS must be a whole number"):
        configured()
