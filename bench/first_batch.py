"""Message → first training batch, inside a ClientApp: warm fork vs a new process.

A round's message is made by the ServerApp and pushed to the SuperLink; its node pulls it
with the global model, its executor starts a ClientApp for it, which loads the app, its
partition and the model, validates that model and begins training. This measures that
whole stretch, per client and round, from the ClientApp's own timeline (`t-sent`: the
message's `created_at`; `t-first-step`), for the two executors in one run. It starts at the
message's creation, not its arrival at the node: a ClientApp in Flower 1.41 never sees
`delivered_at` (the runtime rebuilds the message from its stored objects). So the figure is
an upper bound on "received → first batch"; it also holds the node's poll for the message
(0.1 s at most while a run keeps the node busy, local mode's setting).

- warm: `flowerbed-superexec` forks the task from a parent that has the app imported;
- new process: the same program with `FLOWERBED_SUPEREXEC_WARM=0`, i.e. Flower's own
  executor, which starts `flwr-clientapp` (interpreter, `flwr`, `torch`, the app) per task.

Nodes ≤ compute slots, so no ClientApp waits for a core (that wait is scheduling, not
start-up; it is reported apart anyway).

    .venv/bin/python bench/first_batch.py [--nodes 2] [--rounds 10] [--examples 600] [--json]
"""

from __future__ import annotations

import argparse
import statistics

from _harness import emit, federation, ours_config, run

from flowerbed.paths import app_dir

PHASES = ("t_process_start", "t_handler_start", "t_slot_acquired", "t_first_step")


def measure(nodes: int, rounds: int, examples: int, warm: bool) -> dict[str, object]:
    env = {"FLOWERBED_COMPUTE_SLOTS": str(max(nodes, 1)), "FLOWERBED_SUPEREXEC_WARM": "1" if warm else "0"}
    config = {"num-server-rounds": rounds, "max-train-examples": examples, "fraction-train": 1.0, "min-nodes": nodes}
    with federation(nodes, extra_env=env) as fed:
        events, _, status = run(fed, app_dir(), ours_config(fed, **{**config, "min-available-nodes": nodes}))
    assert status == "finished:completed", (status, events[-1:])
    clients = [c for e in events if e["event"] == "round_finished" and e["round"] > 1 for c in e["clients"]]
    assert clients and all("t_sent" in c for c in clients), "replies carry no message time"
    after = {phase: [c[phase] - c["t_sent"] for c in clients] for phase in PHASES}
    return {
        "samples": len(clients),
        "to_first_batch": {
            "median": round(statistics.median(after["t_first_step"]), 3),
            "max": round(max(after["t_first_step"]), 3),
        },
        "phases_median": {phase: round(statistics.median(values), 3) for phase, values in after.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--examples", type=int, default=600, help="training (and validation) examples per client")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {label: measure(args.nodes, args.rounds, args.examples, warm) for label, warm in (("warm", True), ("new", False))}
    table = [
        [label, r["samples"], *(f"{r['phases_median'][p]:.3f}" for p in PHASES), f"{r['to_first_batch']['max']:.3f}"]
        for label, r in results.items()
    ]
    emit(
        table,
        ["executor", "n", "process started", "handler", "compute slot", "first batch (median)", "first batch (max)"],
        {"nodes": args.nodes, "rounds": args.rounds, "examples": args.examples, **results},
        args.json,
    )


if __name__ == "__main__":
    main()
