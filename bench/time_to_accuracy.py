"""Time to accuracy and training efficiency of a whole federated run.

Runs exactly what a user types — `flowerbed train --nodes N --rounds R --partitioner P
--json` (a fresh local federation and backend in a scratch data dir) — and prints accuracy
per round and wall time, beside the NIID-Bench FedAvg anchors. In the same run it
measures plain centralized training of the same model in one process (samples/s:
this machine's limit for the work) and reports the federation's samples trained per
second of wall time as a fraction of it.

    .venv/bin/python bench/time_to_accuracy.py --nodes 10 --rounds 10 --partitioner iid [--json]
    .venv/bin/python bench/time_to_accuracy.py --nodes 10 --rounds 20 --partitioner dirichlet --alpha 0.5
    .venv/bin/python bench/time_to_accuracy.py ... --set local-epochs=2   (any run-config override)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _harness import emit, free_port_block, phase_timeline

from flowerbed_app.run_settings import RunSettings
from flowerbed_app.task.networks import create_model
from flowerbed_app.task.partition_cache import PartitionSpec, load_partition
from flowerbed_app.task.training import train

ANCHORS = {"iid": "NIID-Bench FedAvg: 89.2%", "dirichlet-0.5": "NIID-Bench FedAvg: 88.1%"}
GOALS = {"iid": (0.91, 10), "dirichlet-0.5": (0.90, 20), "dirichlet-0.1": (0.85, 30)}  # issue 18


def centralized_samples_per_second(seconds: float, settings: RunSettings) -> float:
    """SGD on one process with the machine's default threads: the throughput ceiling (the run's
    batch size, dropout and gradient clipping: the same work per sample as its clients')."""
    options = {
        "learning_rate": 0.01,
        "momentum": 0.9,
        "epochs": 1,
        "batch_size": settings.batch_size,
        "dropout": settings.dropout,
        "clip_norm": settings.clip_norm,
    }
    part = load_partition(PartitionSpec("/usr/share/datasets/fashion-mnist", "iid", 1, 0, 0.5, 42, 0.0))
    model = create_model("cnn")
    n = 2000
    train(model, part.x_train[:256], part.y_train[:256], seed=0, **options)  # warm-up
    done, started = 0, time.perf_counter()
    offset = 0
    while time.perf_counter() - started < seconds:
        x, y = part.x_train[offset : offset + n], part.y_train[offset : offset + n]
        train(model, x, y, seed=done, **options)
        done += len(y)
        offset = (offset + n) % (len(part.y_train) - n)
    return done / (time.perf_counter() - started)


def flowerbed_train(args: argparse.Namespace) -> dict:
    """`flowerbed train … --json` as a user runs it; its last stdout line is the result."""
    with tempfile.TemporaryDirectory(prefix="flowerbed-tta-") as tmp:
        command = [
            str(Path(sys.executable).parent / "flowerbed"),
            "train",
            "--data-dir",
            tmp,
            "--superlink-port",
            str(free_port_block(1)),
            "--supernode-port",
            str(free_port_block(args.nodes)),
            "--nodes",
            str(args.nodes),
            "--rounds",
            str(args.rounds),
            "--partitioner",
            args.partitioner,
            "--json",
            "--set",
            f"max-train-examples={args.max_train_examples}",
        ]
        for key, value in args.set:
            command += ["--set", f"{key}={value}"]
        if args.partitioner == "dirichlet":
            command += ["--alpha", str(args.alpha)]
        print("$ flowerbed " + " ".join(command[1:]), file=sys.stderr)
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"flowerbed train failed ({proc.returncode}):\n{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="time to accuracy and efficiency")
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--partitioner", default="iid")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--max-train-examples", type=int, default=0, help="smoke runs only")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=lambda kv: tuple(kv.split("=", 1)),
        metavar="KEY=VALUE",
        help="a run-config override (default: the app's defaults, what a user gets)",
    )
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    key = args.partitioner if args.partitioner == "iid" else f"dirichlet-{args.alpha:g}"
    overrides = dict(args.set)
    local = ("local-epochs", "batch-size", "dropout", "clip-norm")
    settings = RunSettings.from_run_config({k: v for k, v in overrides.items() if k in local})
    local_epochs = settings.local_epochs
    baseline = centralized_samples_per_second(args.baseline_seconds, settings)
    result = flowerbed_train(args)
    assert result["status"] == "completed", result
    rounds, wall = result["rounds"], result["seconds"]
    elapsed = [r["elapsed"] for r in rounds]
    steady = rounds[1:] or rounds
    profile = {
        **phase_timeline(steady),
        "client training seconds (median)": round(statistics.median(c["train_seconds"] for r in steady for c in r["clients"]), 2),
    }
    trained = sum(c["num_examples"] * local_epochs for r in rounds for c in r["clients"])
    efficiency = trained / wall / baseline
    table = [[r["round"], f"{r['accuracy']:.4f}", f"{r['loss']:.4f}", f"{t:.1f}"] for r, t in zip(rounds, elapsed, strict=True)]
    goal_acc, goal_round = GOALS.get(key, (None, None))
    reached = next((r["round"] for r in rounds if goal_acc and r["accuracy"] >= goal_acc), None)
    print(
        f"final accuracy {rounds[-1]['accuracy']:.4f} in {wall:.0f}s; efficiency {efficiency:.2f} "
        f"({trained / wall:.0f} vs {baseline:.0f} samples/s centralized)"
    )
    emit(
        table,
        ["round", "accuracy", "loss", "elapsed s"],
        {
            "setting": key,
            "nodes": args.nodes,
            "local_epochs": local_epochs,
            "overrides": overrides,
            "rounds": [
                {"round": r["round"], "accuracy": r["accuracy"], "loss": r["loss"], "seconds": r["seconds"], "elapsed": t}
                for r, t in zip(rounds, elapsed, strict=True)
            ],
            "final_accuracy": rounds[-1]["accuracy"],
            "wall_seconds": round(wall, 1),
            "anchor": ANCHORS.get(key),
            "goal": {"accuracy": goal_acc, "by_round": goal_round, "reached_at_round": reached},
            "samples_trained": trained,
            "federated_samples_per_second": round(trained / wall, 1),
            "centralized_samples_per_second": round(baseline, 1),
            "efficiency": round(efficiency, 3),
            "torch_threads": torch.get_num_threads(),
            "checkpoints": len(result["checkpoints"]),
            "profile": profile,
        },
        args.json,
    )
    print("where a round's time goes (median over rounds 2+, s since the round started):", file=sys.stderr)
    for phase, value in profile.items():
        print(f"  {value:8.2f}  {phase}", file=sys.stderr)


if __name__ == "__main__":
    main()
