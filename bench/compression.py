"""Update compression: bytes on the wire and accuracy, compressed vs uncompressed.

Runs the same IID training (same seeds, same nodes) once per compression scheme on
one real federation and prints, per scheme, the client → server bytes per round
(serialized ArrayRecord payloads), the ratio to the dense equivalent, and the final
centralized test accuracy with its gap to the uncompressed run. Goal: topk ≥ 4×
fewer bytes and within 1 pp accuracy after 5 rounds.

    .venv/bin/python bench/compression.py [--nodes 3 --rounds 5 --schemes none,topk,topk+int8] [--json]
    .venv/bin/python bench/compression.py --smoke     # tiny: 2 nodes, 2 rounds, 200 examples
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _harness import emit, federation, ours_config, run

from flowerbed.paths import app_dir


def main() -> None:
    parser = argparse.ArgumentParser(description="update compression: bytes and accuracy")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--schemes", default="none,topk,topk+int8")
    parser.add_argument("--ratio", type=float, default=0.1, help="compression-ratio (share topk keeps)")
    parser.add_argument("--max-train-examples", type=int, default=4000, help="0 = whole partition")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the bench works, measures nothing")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.nodes, args.rounds, args.max_train_examples, args.schemes = 2, 2, 200, "none,topk"
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    if "none" not in schemes:
        schemes.insert(0, "none")

    results: dict[str, dict[str, Any]] = {}
    with federation(args.nodes) as fed:
        for scheme in schemes:
            config = ours_config(
                fed,
                **{
                    "num-server-rounds": args.rounds,
                    "partitioner": "iid",
                    "fraction-train": 1.0,
                    "min-nodes": args.nodes,
                    "min-available-nodes": args.nodes,
                    "max-train-examples": args.max_train_examples,
                    "seed": args.seed,
                    "compression": scheme,
                    "compression-ratio": args.ratio,
                },
            )
            started = time.time()
            events, _, status = run(fed, app_dir(), config)
            rounds = [e for e in events if e["event"] == "round_finished"]
            if status != "finished:completed" or len(rounds) != args.rounds:
                raise SystemExit(f"{scheme}: run ended {status} after {len(rounds)} rounds")
            sent = [r["bytes"]["sent_compressed"] for r in rounds]
            dense = [r["bytes"]["dense_equivalent"] for r in rounds]
            results[scheme] = {
                "accuracy": rounds[-1]["accuracy"],
                "accuracy_per_round": [round(r["accuracy"], 4) for r in rounds],
                "bytes_per_round": round(sum(sent) / len(sent)),
                "dense_bytes_per_round": round(sum(dense) / len(dense)),
                "ratio": round(sum(dense) / sum(sent), 3),
                "seconds": round(time.time() - started, 1),
            }
    baseline = results["none"]["accuracy"]
    for result in results.values():
        result["accuracy_gap_pp"] = round(100 * (result["accuracy"] - baseline), 2)
    table = [
        [
            scheme,
            r["bytes_per_round"],
            r["dense_bytes_per_round"],
            f"{r['ratio']:.2f}x",
            f"{r['accuracy']:.4f}",
            f"{r['accuracy_gap_pp']:+.2f}",
            r["seconds"],
        ]
        for scheme, r in results.items()
    ]
    headers = ["scheme", "bytes/round", "dense bytes/round", "ratio", "accuracy", "gap pp", "seconds"]
    config = {
        "nodes": args.nodes,
        "rounds": args.rounds,
        "ratio": args.ratio,
        "max_train_examples": args.max_train_examples,
        "smoke": args.smoke,
    }
    emit(table, headers, {"config": config, "results": results}, args.json)


if __name__ == "__main__":
    main()
