"""`flowerbed up` — what `make run` starts — as a user runs it, and its clean shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, free_ports

pytestmark = pytest.mark.federation


def _processes_using(data_dir: Path) -> list[str]:
    """Every live process whose environment or command line names this data dir."""
    found = []
    needle = str(data_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if needle in (entry / "environ").read_bytes() or needle in (entry / "cmdline").read_bytes():
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120])
        except (OSError, IndexError):
            continue
    return found


def test_up_prints_a_working_dashboard_url_and_stops_without_orphans(tmp_path):
    data_dir = tmp_path / "local"
    port = free_port()
    cmd = [
        sys.executable, "-m", "flowerbed.cli", "up", "--nodes", "2", "--port", str(port),
        "--superlink-port", str(free_port()), "--supernode-port", str(free_ports(2)), "--data-dir", str(data_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        output, url = [], None
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "".join(output)
                continue
            output.append(line)
            if line.startswith("Dashboard: "):
                url = line.split(" ", 1)[1].strip()
        while not any(line.startswith("API token: ") for line in output):  # printed right after
            output.append(lines.get(timeout=30))
        assert url, "".join(output)
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
        assert _processes_using(data_dir)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    leftovers = []
    for _ in range(50):  # process groups get SIGKILL after their grace period; give them a moment
        leftovers = _processes_using(data_dir)
        if not leftovers:
            break
        time.sleep(0.2)
    assert not leftovers, leftovers
    assert not (data_dir / "federation.json").exists()


def test_executors_exit_when_their_owner_is_killed(tmp_path):
    """Even a SIGKILLed owner leaves no Flower executors behind (Flower's parent watchdog)."""
    script = (
        "import sys, time; from pathlib import Path; from flowerbed import launcher; from flowerbed.topology import Ports;"
        f"launcher.start(Path({str(tmp_path)!r}), 1, Ports({free_port()}, {free_ports(1)}));"
        "print('ready', flush=True); time.sleep(600)"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert owner.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        state = json.loads((tmp_path / "federation.json").read_text())
        executors = [p["pid"] for p in state["processes"] if p["role"].startswith("superexec")]
        assert len(executors) == 2
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in executors):
        time.sleep(0.2)
    alive = [pid for pid in executors if _alive(pid)]
    # Clean up what this test started either way (SuperLink/SuperNode have no watchdog).
    for process in state["processes"]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process["pid"], signal.SIGKILL)
    assert not alive, f"executors outlived their owner: {alive}"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
