"""Bad client updates are that node's failure, never the run's — on real federations.

Misbehaving nodes come from tests/support/fault_injection (a test-only wrapper around the real
ClientApp, put on the test federation's PYTHONPATH): each trains for real, then spoils
its reply the way a broken or hostile node would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fault_injection.client_faults import fault_env
from federation_runs import node_ids, run_training

from flowerbed_app.runtime import checkpoints

# `make test` runs this module in the session beside the others (its own federations on free ports and tmp dirs).
pytestmark = [pytest.mark.federation, pytest.mark.alongside]

SMALL = {"max-train-examples": 300, "max-test-examples": 1000, "fraction-train": 1.0, "batch-size": 32}


def _store(federation) -> Path:
    return Path(federation.data_dir) / "models"


def test_nan_wrong_shape_and_garbage_nodes_fail_alone_and_the_run_completes_finite(start_federation, tmp_path):
    faults = {1: "huge-count", 2: "nan", 3: "wrong-shape", 4: "garbage"}
    federation = start_federation(5, extra_env=fault_env(faults, tmp_path / "faults"))
    nodes = node_ids(federation)
    # Federated evaluation too (every round): those replies pass the same screen (the faults spoil training only).
    overrides = {**SMALL, "num-server-rounds": 2, "min-nodes": 2, "min-available-nodes": 5, "evaluate-every": 1}
    outcome = run_training(federation, {**overrides, "fraction-evaluate": 1.0})

    assert outcome.flower_status == "finished:completed", outcome.events[-3:]
    expected = {nodes[2]: "non-finite values", nodes[3]: "has shape", nodes[4]: "undecodable"}
    for round_ in outcome.of("round_finished"):
        reasons = {f["node_id"]: f["reason"] for f in round_["failures"]}
        assert set(reasons) == set(expected), round_["failures"]
        for node, words in expected.items():
            assert reasons[node].startswith("update rejected: ") and words in reasons[node], reasons[node]
        clients = {c["partition_id"]: c for c in round_["clients"]}
        assert set(clients) == {0, 1}
        # The node claiming a billion examples weighs what its partition can hold (max-train-examples here).
        assert clients[1]["num_examples"] == 300 and clients[1]["num_examples_claimed"] == 10**9
        assert clients[0]["num_examples"] == 300 and "num_examples_claimed" not in clients[0]
        assert {f["phase"] for f in round_["failures"]} == {"train"}
        assert 0 < round_["federated_evaluation"]["eval-accuracy"] <= 1, round_["federated_evaluation"]
    final = outcome.of("checkpoint_saved")[-1]
    weights = checkpoints.load_state_dict(checkpoints.find_checkpoint(_store(federation), final["model_id"]))
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert outcome.of("run_finished")[0]["accuracy"] > 0.3

    # Under central DP, Flower's wrapper skips the aggregation of a round with any failed node
    # (its privacy accounting assumes every sampled node): the failures are still each node's.
    central = run_training(federation, {**SMALL, "num-server-rounds": 1, "dp": "central", "min-available-nodes": 5})
    assert central.flower_status == "finished:completed", central.events[-3:]
    (round_,) = central.of("round_finished")
    assert {f["node_id"] for f in round_["failures"]} == set(expected), round_["failures"]
    assert all(f["reason"].startswith("update rejected: ") for f in round_["failures"])


def test_a_non_finite_global_model_or_too_few_valid_updates_fail_the_run_with_the_reason(start_federation, tmp_path):
    # Partition 2 sends finite weights near float32's limit: valid, so aggregated; FedAvgM's server
    # step (learning rate 10) then overflows. Partition 1 sends NaN: rejected.
    federation = start_federation(3, extra_env=fault_env({1: "nan", 2: "overflow"}, tmp_path / "faults"))
    nodes = node_ids(federation)
    overflow = run_training(
        federation, {**SMALL, "num-server-rounds": 2, "strategy": "fedavgm", "server-learning-rate": 10.0, "min-nodes": 2}
    )
    assert overflow.flower_status == "finished:failed"
    (failed,) = overflow.of("run_failed")
    assert "NaN or infinite weights after aggregating round 1" in failed["reason"], failed
    assert not overflow.of("checkpoint_saved") and not overflow.of("round_finished")
    run_key = overflow.of("run_started")[0]["run_id"]
    assert not list(checkpoints.list_checkpoints(_store(federation), run_key))

    too_few = run_training(federation, {**SMALL, "num-server-rounds": 1, "min-nodes": 3, "min-available-nodes": 3})
    assert too_few.flower_status == "finished:failed"
    (failed,) = too_few.of("run_failed")
    reason = failed["reason"]
    assert "round 1: 2 valid update(s), fewer than min-nodes=3" in reason, reason
    assert f"node {nodes[1]}: update rejected: array" in reason and "non-finite values" in reason, reason
