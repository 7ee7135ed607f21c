"""How many real SuperNodes local mode holds: memory per node, and a round at that size.

For each size N: a local federation of N SuperNodes (each a `flowerbed-supernode` with its
`flowerbed-superexec`, process isolation, as `flowerbed up` starts them). It measures the
resident memory of every process of the federation by role and the CPU the whole
federation uses over `--idle-seconds` of doing nothing (polling, heartbeats), then runs rounds in
which `--clients` of the N nodes train (fraction-train = clients / N, small data) and
samples the machine's available memory while they do. Every ClientApp is a process of
its own (Flower starts one per message), so the machine holds N idle nodes plus as many
training clients as fit beside them; the per-node figure says how many nodes fit in
this machine's memory.

    .venv/bin/python bench/scale.py [--nodes 10 20 40] [--clients 10] [--idle-seconds 30] [--json]

Flower's simulation runtime (virtual clients in Ray actors) is the other way to reach
thousands of clients on one machine: bench/simulation.py (Ray is a dev requirement).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

from _harness import Sampler, cpu_seconds, emit, federation, ours_config, run

from flowerbed.paths import app_dir

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 if it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def meminfo_bytes(key: str) -> int:
    """A /proc/meminfo figure (MemTotal, MemAvailable) in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/meminfo")


def available_bytes() -> int:
    return meminfo_bytes("MemAvailable")


def total_bytes() -> int:
    return meminfo_bytes("MemTotal")


class MemorySampler(Sampler):
    """The lowest MemAvailable seen while a block runs (sampled every 0.2 s)."""

    interval = 0.2

    def __init__(self) -> None:
        self.lowest = available_bytes()

    def sample(self) -> None:
        self.lowest = min(self.lowest, available_bytes())


def idle_cpu_percent(pids: list[int], seconds: float, settle: float = 10.0) -> float:
    """CPU the processes use together while nothing runs, as a share of one core."""
    time.sleep(settle)  # start-up done, nodes registered
    before = sum(cpu_seconds(pid) for pid in pids)
    started = time.monotonic()
    time.sleep(seconds)
    return 100 * (sum(cpu_seconds(pid) for pid in pids) - before) / (time.monotonic() - started)


def measure(num_nodes: int, clients: int, rounds: int, examples: int, idle_seconds: float) -> dict[str, float]:
    started = time.perf_counter()
    with federation(num_nodes, wait_timeout=60 + 5 * num_nodes) as fed:
        up_seconds = time.perf_counter() - started
        idle_cpu = idle_cpu_percent([p.pid for p in fed.processes], idle_seconds) if idle_seconds else None
        by_role: dict[str, int] = {}
        for process in fed.processes:
            by_role[process.role] = by_role.get(process.role, 0) + rss_bytes(process.pid)
        idle_available = available_bytes()
        fraction = min(1.0, clients / num_nodes)
        config = ours_config(
            fed,
            **{
                "num-server-rounds": rounds,
                "fraction-train": fraction,
                "min-nodes": min(clients, num_nodes),
                "min-available-nodes": num_nodes,
                "max-train-examples": examples,
            },
        )
        with MemorySampler() as sampler:
            events, _, status = run(fed, app_dir(), config)
    assert status == "finished:completed", (status, events[-1:])
    starts = [e["ts"] for e in events if e["event"] == "round_started"]
    cadence = [b - a for a, b in itertools.pairwise(starts)]
    trained = [len(e["clients"]) for e in events if e["event"] == "round_finished"]
    node_roles = [r for r in by_role if r not in ("superlink", "superexec-serverapp")]
    per_node = sum(by_role[r] for r in node_roles) / num_nodes
    per_client = (idle_available - sampler.lowest) / max(trained) if trained else 0.0
    return {
        "nodes": num_nodes,
        "up_seconds": round(up_seconds, 1),
        "rss_mib_by_role": {r: round(b / MIB, 1) for r, b in by_role.items()},
        "rss_mib_per_node": round(per_node / MIB, 1),
        "idle_cpu_percent_of_one_core": round(idle_cpu, 2) if idle_cpu is not None else None,
        "clients_per_round": max(trained) if trained else 0,
        # Round 1 also splits the dataset into N cached partitions (once per N): steady rounds only.
        "round_seconds": round(statistics.median(cadence[1:] or cadence), 2) if cadence else None,
        "peak_extra_mib_while_training": round((idle_available - sampler.lowest) / MIB, 1),
        "mib_per_training_client": round(per_client / MIB, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="local-mode scale")
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--clients", type=int, default=10, help="nodes training per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=200, help="training examples per client")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="how long to measure idle CPU (0: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results = [measure(n, args.clients, args.rounds, args.examples, args.idle_seconds) for n in args.nodes]
    largest = results[-1]
    fixed = sum(v for r, v in largest["rss_mib_by_role"].items() if r in ("superlink", "superexec-serverapp"))
    budget = total_bytes() / MIB * 0.9 - fixed - largest["clients_per_round"] * largest["mib_per_training_client"]
    holds = int(budget // largest["rss_mib_per_node"]) if largest["rss_mib_per_node"] else 0
    table = [
        [
            r["nodes"],
            r["up_seconds"],
            r["rss_mib_per_node"],
            r["idle_cpu_percent_of_one_core"],
            r["clients_per_round"],
            r["round_seconds"],
            r["mib_per_training_client"],
        ]
        for r in results
    ]
    print(
        f"this machine ({total_bytes() / MIB / 1024:.0f} GiB) holds about {holds} idle SuperNodes beside "
        f"{largest['clients_per_round']} training clients (90% of memory)"
    )
    emit(
        table,
        ["nodes", "start s", "MiB per node (idle)", "idle CPU %", "clients/round", "s/round", "MiB per training client"],
        {"sizes": results, "estimated_max_nodes": holds, "memory_total_mib": round(total_bytes() / MIB)},
        args.json,
    )


if __name__ == "__main__":
    main()
