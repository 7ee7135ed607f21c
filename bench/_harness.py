"""What every benchmark needs: a real local federation on free ports, a run, its log."""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import httpx

from flowerbed.local import launcher, process_groups
from flowerbed.local.topology import Ports, free_port_block
from flowerbed.runs.run_follower import follow

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("FLOWERBED_CACHE_DIR", str(ROOT / ".flowerbed" / "test-cache"))


@contextmanager
def federation(
    num_nodes: int,
    isolation: str = "process",
    extra_env: dict[str, str] | None = None,
    wait_timeout: float = 120.0,
    programs: dict[str, str] | None = None,
    node_data: list[Path] | None = None,
    ports: Ports | None = None,
    fleet_address: str | None = None,
    tls: Path | None = None,
) -> Iterator[launcher.Federation]:
    """`ports`, when the caller needs them first (a relay in front of the SuperLink, at
    `fleet_address`); `tls`: generate-certs.sh's directory, for a federation over TLS."""
    with tempfile.TemporaryDirectory(prefix="flowerbed-bench-") as tmp:
        ports = ports or free_ports(num_nodes)
        fed = launcher.start(
            Path(tmp),
            num_nodes,
            ports,
            wait_timeout=wait_timeout,
            extra_env={"FLOWERBED_CACHE_DIR": os.environ["FLOWERBED_CACHE_DIR"], **(extra_env or {})},
            isolation=isolation,
            programs=programs,
            node_data=node_data,
            fleet_address=fleet_address,
            tls=tls,
        )
        try:
            yield fed
        finally:
            launcher.stop(fed)


def free_ports(num_nodes: int) -> Ports:
    return Ports(superlink=free_port_block(1), supernode_base=free_port_block(num_nodes))


@contextmanager
def backend(data_dir: Path, token: str, ready_timeout: float = 60.0) -> Iterator[str]:
    """A real `flowerbed serve` on a free port over `data_dir` (no SuperLink); yields its base URL once healthy."""
    port = free_port_block(1)
    env = {**os.environ, "FLOWERBED_DATA_DIR": str(data_dir), "FLOWERBED_API_TOKEN": token}
    env["FLOWERBED_SUPERLINK_URL"] = "127.0.0.1:9"  # nothing listens: the API alone is measured
    server = subprocess.Popen(
        [sys.executable, "-m", "flowerbed.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env={k: v for k, v in env.items() if not k.startswith("OTEL_")},  # the bench measures the API, not exporters
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"flowerbed serve did not become healthy (exit code {server.poll()})")
            time.sleep(0.1)
        yield base
    finally:
        process_groups.stop_groups([server.pid], grace=30)


class Sampler:
    """Calls `sample()` every `interval` s on a thread of its own while a `with` block runs:
    what a benchmark watches beside the work it measures."""

    interval = 1.0

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


class LogTail(Sampler):
    """Lines matching `pattern`, as processes write them to their logs, stamped with the time
    they were seen. Flower logs without timestamps; a line read within `interval` of its
    write dates an event in another process to ~10 ms (Python's logging flushes each record).
    `with LogTail(paths, pattern) as tail:` around the run."""

    def __init__(self, paths: dict[str, Path], pattern: str, interval: float = 0.005) -> None:
        self.paths, self.pattern, self.interval = paths, re.compile(pattern), interval
        self.seen: dict[str, list[tuple[float, str]]] = {name: [] for name in paths}
        self._offsets, self._partial = dict.fromkeys(paths, 0), dict.fromkeys(paths, "")

    def sample(self) -> None:
        for name, path in self.paths.items():
            chunk = b""
            with contextlib.suppress(FileNotFoundError), path.open("rb") as log:
                log.seek(self._offsets[name])
                chunk = log.read()
            now = time.time()
            self._offsets[name] += len(chunk)
            *lines, self._partial[name] = (self._partial[name] + chunk.decode(errors="replace")).split("\n")
            self.seen[name] += [(now, line) for line in lines if self.pattern.search(line)]


def run(fed: launcher.Federation, app: Path, config: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
    """Start a run and follow it; returns (Flowerbed events, log text, Flower status)."""
    control = fed.control()
    run_id = control.start_run(app, config)
    events: list[dict[str, Any]] = []
    log: list[str] = []
    status = follow(control, run_id, events.append, on_log=log.append)
    return events, "".join(log), status


def ours_config(fed: launcher.Federation, **overrides: Any) -> dict[str, Any]:
    return {
        "flowerbed-run-id": "bench-" + uuid.uuid4().hex[:8],
        "model-store": str(Path(fed.data_dir) / "models"),
        **overrides,
    }


def phase_timeline(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Median offset (s since the round started) of each phase, server and client side,
    from `round_finished` events (or the rounds of a run's detail)."""
    phases: dict[str, list[float]] = {}
    for r in rounds:
        for key, value in (r.get("timeline") or {}).items():
            phases.setdefault(f"server.{key}", []).append(value)
        for client in r["clients"]:
            for key in ("t_sent", "t_process_start", "t_handler_start", "t_slot_acquired", "t_first_step", "t_reply"):
                if key in client:
                    phases.setdefault(f"client.{key}", []).append(client[key])
    return dict(sorted(((k, round(statistics.median(v), 2)) for k, v in phases.items()), key=lambda kv: kv[1]))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes; PSS splits shared pages (torch's libraries, Ray's object
    store) between the processes that map them, so the sum does not count them twice."""
    rss = pss = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    return rss, pss


def descendants(root_pid: int) -> dict[int, str]:
    """pid → command line of `root_pid` and every process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    commands = {}
    for pid in tree:
        with contextlib.suppress(OSError):
            commands[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return commands


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def emit(table: list[list[Any]], headers: list[str], result: dict[str, Any], as_json: bool) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table, strict=False)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False)))
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))
    if as_json:
        print(json.dumps(result))
    sys.stdout.flush()
