"""What an idle local federation costs: CPU of `flowerbed up --nodes N` doing nothing.

Starts exactly what a user starts — `flowerbed up` (SuperLink, SuperNodes, their executors,
the backend) in a scratch data dir on free ports — waits until it prints its Dashboard
line, lets start-up settle, then measures the CPU time every process under it uses over
`--seconds` of idleness (no run). The total is given as a share of one core; per role so
the polling that costs it can be found.

    .venv/bin/python bench/idle_cost.py [--nodes 3] [--seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import cpu_seconds, descendants, emit, free_port_block

ROLES = (
    ("flower-superlink", "superlink"),
    ("flowerbed-supernode", "supernode"),
    ("flower-supernode", "supernode"),
    ("--runtime-api-address 127.0.0.1:{superlink}", "superexec (serverapp)"),
    ("superexec", "superexec (clientapp)"),
    ("flowerbed serve", "backend"),
    ("flowerbed up", "flowerbed up"),
)


def role_of(command: str, superlink_port: int) -> str:
    for needle, role in ROLES:
        if needle.format(superlink=superlink_port) in command:
            return role
    return "other"


def start_up(data_dir: Path, nodes: int, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    superlink = free_port_block(1)
    command = [
        str(Path(sys.executable).parent / "flowerbed"),
        "up",
        "--nodes",
        str(nodes),
        "--data-dir",
        str(data_dir),
        "--superlink-port",
        str(superlink),
        "--supernode-port",
        str(free_port_block(nodes)),
        "--port",
        str(free_port_block(1)),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Dashboard:"):
            return proc, superlink
    raise RuntimeError(f"flowerbed up exited ({proc.wait()}) before printing its Dashboard line")


def measure(nodes: int, seconds: float, settle: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="flowerbed-idle-") as tmp:
        proc, superlink = start_up(Path(tmp), nodes, dict(os.environ))
        try:
            time.sleep(settle)
            before = {pid: (cmd, cpu_seconds(pid)) for pid, cmd in descendants(proc.pid).items()}
            started = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - started
            after = {pid: cpu_seconds(pid) for pid in descendants(proc.pid)}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    by_role: dict[str, list[float]] = {}
    for pid, (command, used) in before.items():
        if pid in after:
            by_role.setdefault(role_of(command, superlink), []).append(after[pid] - used)
    share = {role: [100 * s / elapsed for s in spent] for role, spent in by_role.items()}
    return {
        "nodes": nodes,
        "seconds": round(elapsed, 1),
        "percent_of_one_core": round(sum(sum(v) for v in share.values()), 2),
        "by_role": {role: {"processes": len(v), "percent": round(sum(v), 2)} for role, v in sorted(share.items())},
        "load_average": Path("/proc/loadavg").read_text().split()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU of an idle local federation")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after start-up before measuring")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.nodes, args.seconds, args.settle)
    table = [[role, row["processes"], f"{row['percent']:.2f}"] for role, row in result["by_role"].items()]  # type: ignore[union-attr]
    table.append(["total", sum(r[1] for r in table), f"{result['percent_of_one_core']:.2f}"])
    emit(table, ["role", "processes", "% of one core"], result, args.json)


if __name__ == "__main__":
    main()
