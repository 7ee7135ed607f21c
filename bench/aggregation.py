"""FedAvg of 10 ResNet-18 updates: our path vs Flower's vs a plain memory copy.

Our ServerApp aggregates with Flower's own `aggregate_arrayrecords` (we wrap, never
fork, strategies), so "ours" and "Flower's" are the same function; the baseline that
matters is the machine's memory bandwidth: copying the same bytes once. The
bandwidth of an aggregation counts the bytes it must read (all updates).

    .venv/bin/python bench/aggregation.py [--clients 10] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _harness import emit
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from flowerbed_app.models import create_model


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description="aggregation bandwidth")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    state = create_model(args.model).state_dict()
    replies = []
    for i in range(args.clients):
        arrays = ArrayRecord({k: v.float() + i * 1e-3 if v.is_floating_point() else v for k, v in state.items()})
        replies.append(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 100 + i})}))
    flat = [np.concatenate([a.ravel().astype(np.float32) for a in r["arrays"].to_numpy_ndarrays()]) for r in replies]
    total_bytes = sum(f.nbytes for f in flat)

    flower = _best(lambda: aggregate_arrayrecords(replies, "num-examples"), args.repeat)

    def numpy_weighted() -> np.ndarray:
        weights = np.array([100 + i for i in range(args.clients)], dtype=np.float32)
        weights /= weights.sum()
        out = flat[0] * weights[0]
        for w, f in zip(weights[1:], flat[1:], strict=True):
            out += w * f
        return out

    numpy_time = _best(numpy_weighted, args.repeat)
    source = np.concatenate(flat)
    target = np.empty_like(source)
    copy_time = _best(lambda: np.copyto(target, source), args.repeat)

    gbps = {name: total_bytes / t / 1e9 for name, t in (("flower", flower), ("numpy", numpy_time), ("copy", copy_time))}
    table = [
        [
            "Flower aggregate_arrayrecords (our path)",
            f"{flower * 1000:.1f}",
            f"{gbps['flower']:.2f}",
            f"{gbps['flower'] / gbps['copy']:.2f}",
        ],
        [
            "numpy weighted sum (reference)",
            f"{numpy_time * 1000:.1f}",
            f"{gbps['numpy']:.2f}",
            f"{gbps['numpy'] / gbps['copy']:.2f}",
        ],
        ["memory copy of the same bytes", f"{copy_time * 1000:.1f}", f"{gbps['copy']:.2f}", "1.00"],
    ]
    emit(
        table,
        ["path", "ms", "GB/s read", "of copy bandwidth"],
        {
            "clients": args.clients,
            "model": args.model,
            "bytes": total_bytes,
            "seconds": {"flower": flower, "numpy": numpy_time, "copy": copy_time},
            "fraction_of_copy": round(gbps["flower"] / gbps["copy"], 3),
            "goal_fraction": 0.5,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
