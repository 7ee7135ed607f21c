"""Secure aggregation's cost: seconds and bytes per round, SecAgg+ vs plain FedAvg, same run.

One real federation (our node programs; `--warm`: the warm ClientApp executor), the same small run
twice — plain FedAvg, then `secure-aggregation=secaggplus` (four message exchanges per
round instead of one) — then the other order again, so neither always runs first.
Seconds per round: from the first `round_started` to each `round_finished` event.
Bytes per round: what the SuperLink counted for the run (ListRuns bytes sent +
received) divided by the rounds.

    .venv/bin/python bench/secure_aggregation.py [--nodes 4] [--rounds 3] [--warm] [--once] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from typing import Any

from _harness import emit, federation, ours_config

from flowerbed import launcher
from flowerbed.paths import app_dir
from flowerbed.run_follower import follow

MODES = {"fedavg": {}, "secaggplus": {"secure-aggregation": "secaggplus"}}


def one_run(fed: launcher.Federation, nodes: int, rounds: int, extra: dict[str, Any]) -> tuple[list[float], float]:
    control = fed.control()
    config = ours_config(
        fed,
        **{"num-server-rounds": rounds, "max-train-examples": 64, "fraction-train": 1.0, "min-nodes": nodes},
        **{"min-available-nodes": nodes, **extra},
    )
    run_id = control.start_run(app_dir(), config)
    events: list[dict[str, Any]] = []
    status = follow(control, run_id, events.append)
    assert status == "finished:completed", (status, events[-1:])
    finished = [e for e in events if e["event"] == "round_finished"]
    started = next(e for e in events if e["event"] == "round_started")
    stamps = [started["ts"]] + [e["ts"] for e in finished]
    flower = control.get_run(run_id)
    assert flower is not None
    return [b - a for a, b in itertools.pairwise(stamps)], (flower.bytes_sent + flower.bytes_recv) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description="SecAgg+ vs plain FedAvg: seconds and bytes per round")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", action="store_true", help="FLOWERBED_SUPEREXEC_WARM=1: warm ClientApp executor")
    parser.add_argument("--once", action="store_true", help="one run per mode (smoke test), not both orders")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    volume: dict[str, list[float]] = {m: [] for m in MODES}
    with federation(args.nodes, extra_env={"FLOWERBED_SUPEREXEC_WARM": "1" if args.warm else "0"}) as fed:
        for mode in [*MODES] if args.once else [*MODES, *reversed(MODES)]:
            per_round, per_round_bytes = one_run(fed, args.nodes, args.rounds, MODES[mode])
            seconds[mode].extend(per_round)
            volume[mode].append(per_round_bytes)
    result = {
        m: {"seconds_per_round": statistics.median(seconds[m]), "bytes_per_round": statistics.median(volume[m])} for m in MODES
    }
    ratio = {k: result["secaggplus"][k] / result["fedavg"][k] for k in ("seconds_per_round", "bytes_per_round")}
    table = [[m, f"{r['seconds_per_round']:.2f}", f"{r['bytes_per_round'] / 1e6:.2f}"] for m, r in result.items()]
    table.append(["ratio", f"{ratio['seconds_per_round']:.2f}x", f"{ratio['bytes_per_round']:.2f}x"])
    emit(table, ["mode", "s/round (median)", "MB/round"], {**result, "ratio": ratio}, args.json)


if __name__ == "__main__":
    main()
