"""`flowerbed up` — what `make run` starts — as a user runs it, and its clean shutdown."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import free_port, free_ports
from process_census import alive, kill_all, leftovers_after, processes_using

from flowerbed.local.process_leash import leash

pytestmark = pytest.mark.federation


def _start_up(data_dir: Path, nodes: int) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`flowerbed up` as a user starts it; returns the process, its Dashboard URL and its output so far."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "flowerbed.cli", "up", "--nodes", str(nodes), "--port", str(port),
        "--superlink-port", str(free_port()), "--supernode-port", str(free_ports(nodes)), "--data-dir", str(data_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, preexec_fn=leash()
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    output: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        output.append(line)
        if line.startswith("Dashboard: "):
            url = line.split(" ", 1)[1].strip()
            while not any(out.startswith("API token: ") for out in output):  # printed right after
                output.append(lines.get(timeout=30))
            return proc, url, output
    proc.kill()
    raise AssertionError("flowerbed up printed no Dashboard line:\n" + "".join(output))


def test_up_prints_a_working_dashboard_url_and_stops_without_orphans(tmp_path):
    data_dir = tmp_path / "local"
    proc, url, output = _start_up(data_dir, 2)
    port = urlsplit(url).port
    try:
        token = (data_dir / "api-token").read_text().strip()
        # The link carries no token: a one-time login code, in the fragment (never sent to a server).
        assert token not in "".join(output)[: "".join(output).index("API token: ")]
        assert url.startswith(f"http://127.0.0.1:{port}/#login=") and token not in url
        code = url.split("#login=", 1)[1]
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()  # the built dashboard
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as browser:
            assert browser.post("/auth/session", json={"code": code}).status_code == 200  # what the page does with it
            assert browser.get("/auth/session").json()["authenticated"] is True
        assert httpx.post(f"http://127.0.0.1:{port}/auth/session", json={"code": code}, timeout=10).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10).json() == {"database": True, "superlink": True}
        nodes = httpx.get(f"http://127.0.0.1:{port}/nodes", timeout=10).json()["items"]
        assert [n["status"] for n in nodes].count("online") == 2
        # A project-local FLWR_HOME makes the plain Flower CLI talk to this SuperLink.
        flwr = Path(sys.executable).parent / "flwr"
        ls = subprocess.run(
            [str(flwr), "ls", "--format", "json"],
            env={**os.environ, "FLWR_HOME": str(data_dir / "flwr-home")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ls.returncode == 0 and json.loads(ls.stdout)["success"], ls.stdout + ls.stderr
        logs = {p.name for p in (data_dir / "logs").iterdir()}
        assert {"superlink.log", "supernode-1.log", "supernode-2.log", "backend.log"} <= logs
        assert processes_using(data_dir)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    # process groups get SIGKILL after their grace period; give them a moment
    leftovers = leftovers_after(data_dir, 10)
    kill_all(leftovers)
    assert not leftovers, leftovers
    assert not (data_dir / "federation.json").exists()


def test_nothing_outlives_a_killed_flowerbed_up(tmp_path):
    """SIGKILL leaves `flowerbed up` no chance to clean up: its SuperLink, SuperNodes, executors
    and backend must still go (the kernel's parent-death signal, process_leash)."""
    data_dir = tmp_path / "local"
    proc, _, _ = _start_up(data_dir, 2)
    state = json.loads((data_dir / "federation.json").read_text())
    roles = {p["role"] for p in state["processes"]}
    assert {"superlink", "supernode", "superexec-clientapp", "superexec-serverapp", "backend"} <= roles
    assert all(alive(p["pid"]) for p in state["processes"])
    proc.kill()
    proc.wait()
    leftovers = leftovers_after(data_dir, 20)
    kill_all(leftovers)  # whatever this test started, gone either way
    assert not leftovers, f"outlived their killed owner: {leftovers}"
