"""ClientApp cold start: what a fresh `flwr-clientapp` process pays before training.

Flower starts one process per message, so this is paid by every client in every
round. Each stage is timed in a fresh interpreter (no warm imports), repeated, and
reported as a median. Goal: ≤ 2.5 s in total on this machine.

    .venv/bin/python bench/cold_start.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from _harness import emit

# Runs in a fresh interpreter: prints one JSON object with cumulative timestamps.
PROBE = r"""
import json, os, time
HEAVY = ("datasets", "flwr_datasets", "pandas", "pyarrow")
t0 = time.perf_counter()
import flwr.clientapp  # noqa: F401  (what flwr-clientapp imports itself)
t1 = time.perf_counter()
import torch  # noqa: F401
t2 = time.perf_counter()
import flowerbed_app.client_app  # noqa: F401  (our module: must not pull datasets)
t3 = time.perf_counter()
from flowerbed_app.task.partition_cache import PartitionSpec, load_partition
part = load_partition(PartitionSpec(os.environ["DATASET"], "iid", 3, 0, 0.5, 42, 0.1))
t4 = time.perf_counter()
from flowerbed_app.task.networks import create_model
model = create_model("cnn")
t5 = time.perf_counter()
import sys
print(json.dumps({"import flwr": t1 - t0, "import torch": t2 - t1, "import flowerbed_app.client_app": t3 - t2,
                  "load cached partition": t4 - t3, "build model": t5 - t4,
                  "heavy modules loaded": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def measure(repeat: int) -> dict[str, object]:
    env = {**os.environ, "DATASET": "/usr/share/datasets/fashion-mnist"}
    subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True)  # warm the cache
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, check=True
        )  # interpreter start-up cost, for reference
        del out
        started = _now()
        proc = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True, text=True)
        total = _now() - started
        stages = json.loads(proc.stdout.strip().splitlines()[-1])
        stages["process total (incl. interpreter)"] = total
        runs.append(stages)
    keys = [k for k in runs[0] if k != "heavy modules loaded"]
    return {
        "stages": {k: round(statistics.median(float(r[k]) for r in runs), 3) for k in keys},
        "heavy_modules_loaded": runs[0]["heavy modules loaded"],
        "repeat": repeat,
    }


def _now() -> float:
    import time

    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description="ClientApp cold-start breakdown")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.repeat)
    table = [[stage, f"{seconds:.3f}"] for stage, seconds in result["stages"].items()]  # type: ignore[union-attr]
    result["goal_seconds"] = 2.5
    result["meets_goal"] = result["stages"]["process total (incl. interpreter)"] <= 2.5  # type: ignore[index]
    emit(table, ["stage (fresh process, median)", "seconds"], result, args.json)


if __name__ == "__main__":
    main()
