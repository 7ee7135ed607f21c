"""Message → first training batch, inside a ClientApp: warm fork vs a new process.

A round's message is made by the ServerApp and pushed to the SuperLink; its node pulls it
with the global model, its executor starts a ClientApp for it, which loads the app, its
partition and the model and begins training (it validates the received model after
training). Two starting points, per client and round:
- `received`: the node has the message and its objects (the SuperNode's "Received
  successfully" log line, seen by a 5 ms tail of its log: Flower logs without timestamps).
  From here on the node, its executor and the ClientApp are ours to make fast: the goal
  ("message received → first batch ≤ 0.3 s") is measured from this point;
- `created`: the message's `created_at` (a ClientApp in Flower 1.41 never sees `delivered_at`;
  the runtime rebuilds the message from its stored objects), which adds the ServerApp's
  push, the node's poll (0.1 s at most while a run keeps the node busy, local mode's
  setting) and its pull of the message and objects from the SuperLink (reported apart:
  `created_to_pull_started_median` ends at the node's "Receiving" line).
The ClientApp's own timeline (`t-process-start`, `t-handler-start`, `t-first-step`) gives the
phases. Rounds after the first (the first imports the app in the warm parent).

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
from pathlib import Path

from _harness import LogTail, emit, federation, ours_config, run

from flowerbed.paths import app_dir

PHASES = ("t_process_start", "t_handler_start", "t_slot_acquired", "t_first_step")
# A SuperNode handles one message at a time: each "Receiving" line is followed by its own "Received".
RECEIPT_LINES = r"Receiving: \w+ message|Received successfully"


def receipts(lines: list[tuple[float, str]]) -> list[tuple[float, float]]:
    """(pull started, received) of each train message, in order (the k-th is round k's)."""
    times, started = [], 0.0
    for seen, line in lines:
        if "Receiving:" in line:
            started = seen if "Receiving: train message" in line else 0.0
        elif started:
            times.append((started, seen))
            started = 0.0
    return times


def medians(clients: list[dict[str, float]], start: str) -> dict[str, float]:
    return {phase: round(statistics.median(c[phase] - c[start] for c in clients), 3) for phase in PHASES}


def spread(clients: list[dict[str, float]], start: str, end: str = "t_first_step") -> dict[str, float]:
    seconds = [c[end] - c[start] for c in clients]
    return {"median": round(statistics.median(seconds), 3), "max": round(max(seconds), 3)}


def measure(nodes: int, rounds: int, examples: int, warm: bool) -> dict[str, object]:
    env = {"FLOWERBED_COMPUTE_SLOTS": str(max(nodes, 1)), "FLOWERBED_SUPEREXEC_WARM": "1" if warm else "0"}
    config = {"num-server-rounds": rounds, "max-train-examples": examples, "fraction-train": 1.0, "min-nodes": nodes}
    with federation(nodes, extra_env=env) as fed:
        logs = {p.name: Path(p.log) for p in fed.processes if p.role == "supernode"}
        with LogTail(logs, RECEIPT_LINES) as tail:
            events, _, status = run(fed, app_dir(), ours_config(fed, **{**config, "min-available-nodes": nodes}))
    assert status == "finished:completed", (status, events[-1:])
    by_node = {name: receipts(lines) for name, lines in tail.seen.items()}
    # Client times are seconds since their round started; its wall clock: `round_started`'s
    # time less the offset at which the round's messages were made (`train_sent`).
    sent_at = {e["round"]: e["ts"] for e in events if e["event"] == "round_started"}
    clients = []
    for event in events:
        if event["event"] != "round_finished" or event["round"] == 1:
            continue
        started = sent_at[event["round"]] - event["timeline"]["train_sent"]
        for client in event["clients"]:
            node_receipts = by_node[f"supernode-{client['partition_id'] + 1}"]  # supernode-<i+1> serves partition i
            pulling, received = node_receipts[event["round"] - 1]
            clients.append({**client, "t_pulling": pulling - started, "t_received": received - started})
    assert clients and all("t_sent" in c for c in clients), "replies carry no message time"
    return {
        "samples": len(clients),
        "received_to_first_batch": spread(clients, "t_received"),
        "to_first_batch": spread(clients, "t_sent"),  # from created, as before
        "created_to_received_median": spread(clients, "t_sent", "t_received")["median"],
        "created_to_pull_started_median": spread(clients, "t_sent", "t_pulling")["median"],
        "phases_after_received_median": medians(clients, "t_received"),
        "phases_after_created_median": medians(clients, "t_sent"),
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
        [
            label,
            r["samples"],
            *(f"{r['phases_after_received_median'][p]:.3f}" for p in PHASES),
            f"{r['received_to_first_batch']['max']:.3f}",
            f"{r['to_first_batch']['median']:.3f}",
        ]
        for label, r in results.items()
    ]
    emit(
        table,
        [
            "executor",
            "n",
            "process started",
            "handler",
            "compute slot",
            "first batch (median)",
            "first batch (max)",
            "from created (median)",
        ],
        {"nodes": args.nodes, "rounds": args.rounds, "examples": args.examples, **results},
        args.json,
    )


if __name__ == "__main__":
    main()
