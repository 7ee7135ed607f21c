"""End-to-end: real SuperLink and SuperNodes, real training on Fashion-MNIST."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from federation_runs import node_ids, run_training

from flowerbed.local import launcher
from flowerbed_app.runtime import checkpoints
from flowerbed_app.task.networks import create_model
from flowerbed_app.task.partition_cache import load_test_split
from flowerbed_app.task.training import evaluate

pytestmark = pytest.mark.federation
DATASET = "/usr/share/datasets/fashion-mnist"


def test_two_rounds_iid_learn_and_checkpoints_reproduce_accuracy(start_federation):
    federation = start_federation(3)
    # One local epoch (the default is 2): the test is about learning and checkpoints, not epochs.
    outcome = run_training(federation, {"num-server-rounds": 2, "partitioner": "iid", "model": "cnn", "local-epochs": 1})

    assert outcome.flower_status == "finished:completed", outcome.events[-1:]
    rounds = outcome.of("round_finished")
    assert [r["round"] for r in rounds] == [1, 2]
    assert rounds[-1]["accuracy"] > 0.70
    finished = outcome.of("run_finished")
    assert len(finished) == 1 and finished[0]["accuracy"] == rounds[-1]["accuracy"]
    for r in rounds:
        # fraction-train 0.4 of 3 nodes → min-nodes = 2 clients per round, each trained on its partition
        assert len(r["clients"]) == 2 and not r["failures"]
        assert all(c["num_examples"] > 10_000 for c in r["clients"])

    # What each node holds, described once it has replied: its partition's label histogram.
    described = outcome.of("data_described")
    trained = {c["node_id"]: c["partition_id"] for r in rounds for c in r["clients"]}
    assert 1 <= len(described) <= len(rounds)  # only when a round brought a node not described yet
    nodes = {n["node_id"]: n for n in described[-1]["nodes"]}
    assert set(nodes) == set(trained), (nodes, trained)
    for node_id, partition_id in trained.items():
        node = nodes[node_id]
        assert node["format"] == f"Fashion-MNIST partition {partition_id + 1} of 3 (iid)"
        assert node["examples"] == 20_000 and sum(node["classes"].values()) == 20_000  # 60,000 / 3, train + validation
        assert len(node["classes"]) == 10 and all(1_700 < n < 2_300 for n in node["classes"].values()), node

    # Every round's checkpoint loads into a fresh model and reproduces the reported accuracy.
    store = Path(federation.data_dir) / "models"
    saved = outcome.of("checkpoint_saved")
    assert [c["round"] for c in saved] == [1, 2]
    x_test, y_test = load_test_split(DATASET)
    for r, c in zip(rounds, saved, strict=True):
        meta = checkpoints.find_checkpoint(store, c["model_id"])
        assert meta["sha256"] == c["sha256"] and meta["round"] == r["round"]
        model = create_model("cnn")
        model.load_state_dict(checkpoints.load_state_dict(meta))
        _, accuracy = evaluate(model, x_test, y_test)
        assert accuracy == pytest.approx(r["accuracy"], abs=1e-9)


def test_killed_supernode_is_recorded_and_run_completes(start_federation):
    federation = start_federation(3)
    victim_node = next(p for p in federation.processes if p.name == "supernode-3")
    victim_exec = next(p for p in federation.processes if p.name == "superexec-clientapp-3")
    victim_id = node_ids(federation)[2]
    killed = []

    def kill_on_first_round(event):
        if event["event"] == "round_started" and event["round"] == 1 and not killed:
            assert victim_id in event["selected"]
            launcher.kill_process(victim_exec)
            launcher.kill_process(victim_node)
            killed.append(victim_id)

    outcome = run_training(
        federation,
        {"num-server-rounds": 2, "fraction-train": 1.0, "max-train-examples": 300, "min-nodes": 2},
        on_event=kill_on_first_round,
    )
    assert killed, "the run never started round 1"
    assert outcome.flower_status == "finished:completed"
    first, second = outcome.of("round_finished")
    assert [f["node_id"] for f in first["failures"]] == [victim_id]
    assert len(first["clients"]) == 2
    assert victim_id not in {c["node_id"] for c in first["clients"]}
    assert len(second["clients"]) == 2 and victim_id not in second["selected"]


def test_too_few_nodes_fails_with_clear_reason(start_federation):
    federation = start_federation(1)
    outcome = run_training(
        federation, {"num-server-rounds": 1, "min-available-nodes": 2, "min-nodes": 2, "node-wait-timeout": 4.0}
    )
    assert outcome.flower_status == "finished:failed"
    waiting = outcome.of("waiting_for_nodes")
    assert waiting and waiting[0]["connected"] == 1 and waiting[0]["needed"] == 2
    (failed,) = outcome.of("run_failed")
    assert "waiting for nodes timed out: 1/2" in failed["reason"]
    assert not outcome.of("round_started")


def test_compute_slots_serialize_clients_on_one_machine(start_federation):
    """Local mode lets at most FLOWERBED_COMPUTE_SLOTS ClientApps compute at once; with one
    slot, three clients' compute intervals (slot acquired → reply) never overlap."""
    federation = start_federation(3, extra_env={"FLOWERBED_COMPUTE_SLOTS": "1"})
    outcome = run_training(
        federation,
        {"num-server-rounds": 1, "fraction-train": 1.0, "max-train-examples": 2000, "partitioner": "iid"},
    )
    assert outcome.flower_status == "finished:completed", outcome.events[-1:]
    (round_1,) = outcome.of("round_finished")
    clients = round_1["clients"]
    assert len(clients) == 3 and not round_1["failures"]
    intervals = sorted((c["t_slot_acquired"], c["t_reply"]) for c in clients)
    assert all(earlier_end <= later_start for (_, earlier_end), (later_start, _) in itertools.pairwise(intervals))
    # and the slot was contended: at least one client's handler waited for it
    assert max(c["t_slot_acquired"] - c["t_handler_start"] for c in clients) > 0.1
    assert (Path(federation.data_dir) / "compute-slots" / "slot-0.lock").exists()
