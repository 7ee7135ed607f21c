"""FedAvg of 10 ResNet-18 updates: our path vs Flower's vs a plain memory copy.

Our ServerApp runs Flower's strategies, whose weighted average is computed by
`flowerbed_app.strategy.fast_aggregation` (bit-identical to Flower's `aggregate_arrayrecords`,
checked here on every run). The baseline that matters is the machine's memory
bandwidth: copying the same bytes once. The bandwidth of an aggregation counts the
bytes it must read (all updates), from the records as they arrive in replies.
Also timed: the checks every update passes before it may be aggregated
(`flowerbed_app.strategy.update_validation`, what `reply_screen` runs on each reply).

    .venv/bin/python bench/aggregation.py [--clients 10] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from _harness import emit
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from flowerbed_app.strategy.fast_aggregation import aggregate_arrayrecords as fast_aggregate_arrayrecords
from flowerbed_app.strategy.update_validation import check_arrays, layout_of
from flowerbed_app.task.networks import create_model


def _best_of(variants: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Fastest of `repeat` runs of each variant, interleaved so that a burst of load
    elsewhere on the machine hits all variants alike (noise only ever adds time)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: min(values) for name, values in times.items()}


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

    expected, got = aggregate_arrayrecords(replies, "num-examples"), fast_aggregate_arrayrecords(replies, "num-examples")
    identical = list(expected.keys()) == list(got.keys()) and all(
        np.array_equal(expected[k].numpy(), got[k].numpy()) and expected[k].dtype == got[k].dtype for k in expected
    )

    def numpy_weighted() -> np.ndarray:
        weights = np.array([100 + i for i in range(args.clients)], dtype=np.float32)
        weights /= weights.sum()
        out = flat[0] * weights[0]
        for w, f in zip(weights[1:], flat[1:], strict=True):
            out += w * f
        return out

    layouts = layout_of(replies[0]["arrays"])
    source = np.concatenate(flat)
    target = np.empty_like(source)
    seconds = _best_of(
        {
            "ours": lambda: fast_aggregate_arrayrecords(replies, "num-examples"),
            "flower": lambda: aggregate_arrayrecords(replies, "num-examples"),
            "numpy": numpy_weighted,
            "checks": lambda: [check_arrays(r["arrays"], layouts) for r in replies],
            "copy": lambda: np.copyto(target, source),
        },
        args.repeat,
    )
    ours, flower, numpy_time, copy_time = seconds["ours"], seconds["flower"], seconds["numpy"], seconds["copy"]
    checks = seconds["checks"]

    gbps = {
        name: total_bytes / t / 1e9
        for name, t in (("ours", ours), ("flower", flower), ("numpy", numpy_time), ("checks", checks), ("copy", copy_time))
    }
    table = [
        [
            "Flowerbed fast_aggregation (our path)",
            f"{ours * 1000:.1f}",
            f"{gbps['ours']:.2f}",
            f"{gbps['ours'] / gbps['copy']:.2f}",
        ],
        [
            "Flower aggregate_arrayrecords",
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
        [
            "update checks before aggregation",
            f"{checks * 1000:.1f}",
            f"{gbps['checks']:.2f}",
            f"{gbps['checks'] / gbps['copy']:.2f}",
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
            "seconds": {"ours": ours, "flower": flower, "numpy": numpy_time, "checks": checks, "copy": copy_time},
            "checks_vs_aggregation": round(checks / ours, 3),
            "fraction_of_copy": round(gbps["ours"] / gbps["copy"], 3),
            "flower_fraction_of_copy": round(gbps["flower"] / gbps["copy"], 3),
            "speedup_vs_flower": round(flower / ours, 2),
            "bit_identical_to_flower": identical,
            "goal_fraction": 0.5,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
