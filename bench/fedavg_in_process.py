"""The app's federated training in one process: accuracy per round for a run config, fast.

The accuracy a run reaches depends on the algorithm — partitions, node sampling, local
training, aggregation — not on Flower's runtime, so hyperparameters can be explored here
without a federation: the same cached partitions (`PartitionSpec.of`), the same
client training (`flowerbed_app.task.training.train` with the ClientApp's per-round seed and
learning-rate schedule), the strategy built from the same table (`strategies.STRATEGIES`,
Flower's classes) aggregating the same replies, and centralized evaluation on the test
split after every round. Clients train one after another on all of this process's threads.
What it does not do: DP, compression, selection by performance, failures — the run config
may not ask for them. Choices made here are then confirmed with `bench/time_to_accuracy.py`
(a real federation).

    .venv/bin/python bench/fedavg_in_process.py --nodes 10 --rounds 10 --set local-epochs=2 --set lr-schedule=cosine
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _harness import emit  # also sets FLOWERBED_CACHE_DIR, as for every benchmark
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from flowerbed_app.run_settings import BY_KEY, RunSettings
from flowerbed_app.strategy.strategies import STRATEGIES
from flowerbed_app.task.networks import create_model
from flowerbed_app.task.partition_cache import PartitionSpec, load_partition, load_test_split
from flowerbed_app.task.training import evaluate, round_options, scheduled_learning_rate, seeded_model, train

UNSUPPORTED = {"dp": "none", "compression": "none", "selection": "random"}


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` run-config overrides, typed like RunSettings' defaults."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        values[key] = BY_KEY[key].coerce(raw, key) if key in BY_KEY else raw  # unknown keys: RunSettings names them
    return values


def _reply(arrays: ArrayRecord, num_examples: int, node_id: int) -> Message:
    """A train reply as Flower's strategies receive it (content and reply metadata only)."""
    instruction = Message(RecordDict({"config": ConfigRecord()}), dst_node_id=node_id, message_type="train")
    instruction.metadata.__dict__["_message_id"] = instruction.object_id
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": num_examples})})
    return Message(content, reply_to=instruction)


def run(settings: RunSettings, num_nodes: int) -> list[dict[str, float]]:
    for key, allowed in UNSUPPORTED.items():
        if getattr(settings, key) != allowed:
            sys.exit(f"{key}={getattr(settings, key)} is not simulated here; use bench/time_to_accuracy.py")
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # Messages need a task identity
    strategy_cls, parameters = STRATEGIES[settings.strategy]
    strategy = strategy_cls(fraction_train=settings.fraction_train, min_train_nodes=settings.min_nodes, **parameters(settings))
    model = seeded_model(lambda: create_model(settings.model), settings.seed)
    arrays = ArrayRecord(model.state_dict())
    strategy.current_arrays = arrays  # FedAvgM's server momentum starts from the initial weights
    partitions = [load_partition(PartitionSpec.of(settings, i, num_nodes)) for i in range(num_nodes)]
    x_test, y_test = load_test_split(settings.dataset)
    sample_size = max(int(num_nodes * settings.fraction_train), settings.min_nodes)
    results = []
    for server_round in range(1, settings.num_rounds + 1):
        started = time.perf_counter()
        random.seed(settings.seed * 1_000_003 + server_round)  # as the ServerApp seeds Flower's sampling
        chosen = sorted(random.sample(range(num_nodes), sample_size))
        lr = scheduled_learning_rate(settings.learning_rate, settings.lr_schedule, server_round, settings.num_rounds)  # reported
        replies, loss = [], 0.0
        for partition_id in chosen:
            part = partitions[partition_id]
            cap = settings.max_train_examples or len(part.y_train)
            model.load_state_dict(arrays.to_torch_state_dict())
            result = train(
                model,
                part.x_train[:cap],
                part.y_train[:cap],
                **round_options(settings, server_round, partition_id),
            )
            loss += result.loss / len(chosen)
            replies.append(_reply(ArrayRecord(model.state_dict()), result.num_examples, partition_id + 1))
        arrays, _ = strategy.aggregate_train(server_round, replies)
        model.load_state_dict(arrays.to_torch_state_dict())
        test_loss, accuracy = evaluate(model, x_test, y_test)
        results.append(
            {
                "round": server_round,
                "accuracy": round(accuracy, 4),
                "loss": round(test_loss, 4),
                "train_loss": round(loss, 4),
                "learning_rate": round(lr, 6),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        print(f"round {server_round}: accuracy {accuracy:.4f} (lr {lr:.4g})", file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="federated training in one process (hyperparameter exploration)")
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--partitioner", default="iid")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any run-config key")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = {"num-server-rounds": args.rounds, "partitioner": args.partitioner, "alpha": args.alpha}
    settings = RunSettings.from_run_config({**config, **parse_overrides(args.set)})
    rounds = run(settings, args.nodes)
    best = max(rounds, key=lambda r: r["accuracy"])
    emit(
        [[r["round"], r["accuracy"], r["loss"], r["learning_rate"], r["seconds"]] for r in rounds],
        ["round", "accuracy", "loss", "client lr", "s"],
        {
            "nodes": args.nodes,
            "config": {**config, **parse_overrides(args.set)},
            "rounds": rounds,
            "final_accuracy": rounds[-1]["accuracy"],
            "best": {"round": best["round"], "accuracy": best["accuracy"]},
            "torch_threads": torch.get_num_threads(),
            "pid": os.getpid(),
            "host_load": Path("/proc/loadavg").read_text().split()[0],
        },
        args.json,
    )


if __name__ == "__main__":
    main()
