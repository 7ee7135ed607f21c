"""How should local mode spend the machine's cores on a round's ClientApps?

Flower starts every ClientApp of a round at once, each a fresh process. This starts
that many fresh processes at once (default 8, each training a 10-node IID client's
share: 5,400 Fashion-MNIST examples, SimpleCNN, batch 32) under three layouts,
interleaved in the same run: no limit (each with one thread, Flower's behaviour), at
most one training per core (compute slots × 1 thread, local mode's default), and one
training at a time with every core's threads (1 slot × cores threads). It reports
samples per second of wall time, process start and imports included, as a round
would see them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from _harness import emit, summary

from flowerbed_app.task.partition_cache import PartitionSpec, load_partition

SPEC = ("/usr/share/datasets/fashion-mnist", "iid", 10)  # the 10-node IID run's partitions
CHILD = """
import json, os, sys, time
import torch
threads, n, seed, batch_size = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
from flowerbed_app.runtime.compute_slots import maybe_compute_slot
from flowerbed_app.task.networks import create_model
from flowerbed_app.task.partition_cache import PartitionSpec, load_partition
from flowerbed_app.task.training import train
imported = time.time()
with maybe_compute_slot() as acquired:
    part = load_partition(PartitionSpec("/usr/share/datasets/fashion-mnist", "iid", 10, seed % 10, 0.5, 42, 0.1))
    result = train(create_model("cnn"), part.x_train[:n], part.y_train[:n], learning_rate=0.01, momentum=0.9,
                   epochs=1, batch_size=batch_size, seed=seed)
print(json.dumps({"train_seconds": result.seconds, "waited": acquired - imported}))
"""


def run_layout(clients: int, slots: int, threads: int, examples: int, batch_size: int) -> dict[str, Any]:
    """`clients` fresh processes started at once; at most `slots` train at a time (0: no limit)."""
    with tempfile.TemporaryDirectory(prefix="flowerbed-slots-") as slot_dir:
        env = {**os.environ, "FLOWERBED_COMPUTE_SLOTS": str(slots), "FLOWERBED_COMPUTE_SLOTS_DIR": slot_dir}
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(threads), str(examples), str(i), str(batch_size)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(clients)
        ]
        outputs = []
        for proc in procs:
            out, _ = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"child failed ({proc.returncode})")
            outputs.append(json.loads(out.strip().splitlines()[-1]))
        wall = time.perf_counter() - started
    return {
        "wall_seconds": wall,
        "samples_per_second": examples * clients / wall,
        "train_seconds": [o["train_seconds"] for o in outputs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5400, help="examples per client (10-node IID share)")
    parser.add_argument("--clients", type=int, default=8, help="ClientApps started at once (a round)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    for partition_id in range(SPEC[2]):  # cut and cache the partitions before anything is timed
        load_partition(PartitionSpec(*SPEC, partition_id, 0.5, 42, 0.1))
    layouts = {
        "no limit, 1 thread each (Flower)": (0, 1),
        f"{cores} slots x 1 thread (local mode)": (cores, 1),
        f"1 slot x {cores} threads": (1, cores),
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in layouts}
    for _ in range(args.repeat):  # interleaved: the machine's noise hits every layout alike
        for name, (slots, threads) in layouts.items():
            results[name].append(run_layout(args.clients, slots, threads, args.examples, args.batch_size))
    table, out = [], {}
    for name, runs in results.items():
        rate = summary([r["samples_per_second"] for r in runs])
        wall = summary([r["wall_seconds"] for r in runs])
        train = summary([s for r in runs for s in r["train_seconds"]])
        table.append([name, f"{wall['median']:.1f}", f"{rate['median']:.0f}", f"{train['median']:.2f}"])
        out[name] = {"samples_per_second": rate, "wall_seconds": wall, "client_train_seconds": train}
    best = max(out, key=lambda n: out[n]["samples_per_second"]["median"])
    emit(
        table,
        ["layout", "wall s", "samples/s", "client train s (median)"],
        {"cores": cores, "examples": args.examples, "clients": args.clients, "layouts": out, "best": best},
        args.json,
    )


if __name__ == "__main__":
    main()
