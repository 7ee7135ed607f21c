"""Nothing outlives its owner: a test session ended by SIGTERM (what a CI timeout sends)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from interrupted_session import READY_ENV
from process_census import kill_all, leftovers_after, processes_using

from flowerbed.local.process_leash import leash

pytestmark = pytest.mark.federation
ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_to_a_test_session_leaves_no_flower_process(tmp_path):
    base, ready = tmp_path / "inner", tmp_path / "ready"
    inner = subprocess.Popen(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *(f"--basetemp={base}", "tests/support/interrupted_session.py"),
        ],
        cwd=ROOT,
        env={**os.environ, READY_ENV: str(ready)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=leash(),
    )
    try:
        deadline = time.monotonic() + 300
        while not ready.exists() and inner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ready.exists(), "the inner session never got its federations up"
        started = processes_using(base)
        roles = " ".join(started.values())
        assert roles.count("flower-superlink") == 2 and roles.count("flowerbed-supernode") == 4, started
        inner.send_signal(signal.SIGTERM)
        output, _ = inner.communicate(timeout=120)
    finally:
        if inner.poll() is None:
            inner.kill()
    leftovers = leftovers_after(base, 15)
    kill_all(leftovers)
    assert not leftovers, f"{len(leftovers)} processes outlived the interrupted session: {leftovers}\n{output[-2000:]}"
    assert "KeyboardInterrupt" in output, output[-2000:]  # the session ended through its teardowns
