"""Secure aggregation (SecAgg+) on real federations: accuracy, what the server holds, dropouts, refusals."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import env_extra, free_port, free_ports
from fault_injection.client_faults import fault_env, hung_pid
from federation_runs import RunOutcome, node_ids, run_training

from flowerbed.local import launcher
from flowerbed.local.topology import Ports
from flowerbed_app.run_settings import RunSettings, SettingsError
from flowerbed_app.runtime import checkpoints

sys.path.insert(0, str(Path(__file__).parents[1] / "support" / "secagg_capture"))
from capture import capture_env

pytestmark = pytest.mark.federation

NODES = 4
SMALL = {
    "max-train-examples": 200,
    "max-test-examples": 1000,
    "fraction-train": 1.0,
    "min-nodes": NODES,
    "min-available-nodes": NODES,
    "seed": 11,
}
SECAGG = {"secure-aggregation": "secaggplus", "secagg-num-shares": 3, "secagg-reconstruction-threshold": 2}


@pytest.fixture(scope="module")
def capturing_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[launcher.Federation, Path]]:
    """Four SuperNodes whose ServerApp and ClientApps record what they send and receive."""
    directory = tmp_path_factory.mktemp("secagg-federation")
    captured = directory / "captured"
    ports = Ports(superlink=free_port(), supernode_base=free_ports(NODES))
    federation = launcher.start(directory, NODES, ports, extra_env={**env_extra(), **capture_env(captured)})
    try:
        yield federation, captured
    finally:
        launcher.stop(federation)


def _completed(outcome: RunOutcome) -> list[dict]:
    assert outcome.flower_status == "finished:completed", outcome.events[-3:]
    rounds = outcome.of("round_finished")
    assert rounds and all(not r["failures"] for r in rounds), rounds[-1]["failures"] if rounds else outcome.events[-3:]
    return rounds


def _weights(federation: launcher.Federation, outcome: RunOutcome, server_round: int) -> np.ndarray:
    (saved,) = [e for e in outcome.of("checkpoint_saved") if e["round"] == server_round]
    meta = checkpoints.find_checkpoint(Path(federation.data_dir) / "models", saved["model_id"])
    return np.concatenate([v.numpy().ravel().astype(np.float64) for v in checkpoints.load_state_dict(meta).values()])


def _flat(path: Path, skip_first: bool = False) -> np.ndarray:
    with np.load(path) as npz:
        arrays = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    return np.concatenate([a.ravel().astype(np.float64) for a in arrays[1 if skip_first else 0 :]])


@pytest.fixture(scope="module")
def plain_and_secagg(capturing_federation) -> tuple[RunOutcome, RunOutcome, dict[int, np.ndarray]]:
    """The same 3-round run twice, plain FedAvg then SecAgg+; the clear round-1 models of the plain run."""
    federation, captured = capturing_federation
    plain = run_training(federation, {**SMALL, "num-server-rounds": 3})
    clear = {int(p.stem.split("-n")[1]): _flat(p) for p in captured.glob("clear-r1-n*.npz")}
    for path in captured.glob("clear-*.npz"):
        path.unlink()
    secagg = run_training(federation, {**SMALL, **SECAGG, "num-server-rounds": 3})
    return plain, secagg, clear


def test_secaggplus_completes_with_the_accuracy_of_plain_fedavg(plain_and_secagg, capturing_federation) -> None:
    plain, secagg, _ = plain_and_secagg
    plain_rounds, secagg_rounds = _completed(plain), _completed(secagg)
    assert len(secagg_rounds) == 3
    for p, s in zip(plain_rounds, secagg_rounds, strict=True):
        # Who took part, with their examples and local metrics, still shows in a masked round.
        assert sorted(c["node_id"] for c in s["clients"]) == sorted(c["node_id"] for c in p["clients"])
        assert all(c["num_examples"] == 200 and "val_accuracy" in c and "t_reply" in c for c in s["clients"])
        assert s["accuracy_kind"] == "centralized" and s["model_id"]
        assert {"secaggplus_setup", "secaggplus_share_keys", "secaggplus_collect_masked_vectors", "secaggplus_unmask"} <= set(
            s["timeline"]
        )
        print(f"round {s['round']}: plain {p['accuracy']:.4f}, secaggplus {s['accuracy']:.4f}")
    difference = secagg_rounds[-1]["accuracy"] - plain_rounds[-1]["accuracy"]
    print(f"final accuracy difference (secaggplus - plain): {difference * 100:+.3f} pp")
    assert abs(difference) <= 0.005


def test_server_holds_only_masked_updates_whose_sum_is_the_plain_aggregate(plain_and_secagg, capturing_federation) -> None:
    federation, captured = capturing_federation
    plain, secagg, clear = plain_and_secagg
    masked = {int(p.stem.split("-n")[1]): _flat(p, skip_first=True) for p in captured.glob("masked-r1-n*.npz")}
    assert len(clear) == NODES and set(masked) == set(clear), (sorted(masked), sorted(clear))
    for node, vector in masked.items():
        truth = clear[node]
        assert vector.shape == truth.shape
        # What the server received from this node is statistically unrelated to the node's true model…
        correlation = np.corrcoef(vector, truth)[0, 1]
        print(f"node {node}: correlation(masked, clear) = {correlation:+.4f} over {truth.size} parameters")
        assert abs(correlation) < 0.02
        # …while an unmasked quantization of that model would have been (the check can tell the difference).
        quantized = np.round((np.clip(truth, -8, 8) + 8) / 16 * (2**22 - 1))
        assert np.corrcoef(quantized, truth)[0, 1] > 0.99
    # The sum SecAgg+ unmasked is the plain FedAvg aggregate of the same updates, up to quantization.
    error = np.abs(_weights(federation, secagg, 1) - _weights(federation, plain, 1)).max()
    step = 16 / 2**22
    print(f"max |secaggplus - plain| after round 1: {error:.2e} (quantization step {step:.2e})")
    assert error <= NODES * step


def test_refused_combinations_name_the_setting() -> None:
    cases = {
        "strategy": {"strategy": "fedmedian"},
        "compression": {"compression": "topk"},
        "dp": {"dp": "central"},
        "secagg-reconstruction-threshold": {"secagg-num-shares": 3, "secagg-reconstruction-threshold": 3},
    }
    for key, values in cases.items():
        with pytest.raises(SettingsError) as refused:
            RunSettings.from_run_config({**SECAGG, **values})
        assert refused.value.key == key
    RunSettings.from_run_config({**SECAGG, "dp": "local", "strategy": "fedavgm"})  # local DP and FedAvg-family work


REFUSED = [
    ({"strategy": "krum", "min_nodes": 3, "min_available_nodes": 3}, "strategy"),
    ({"strategy": "fedmedian"}, "strategy"),
    ({"strategy": "fedtrimmedavg"}, "strategy"),
    ({"compression": "int8"}, "compression"),
    ({"dp": "central"}, "dp"),
]


@pytest.mark.parametrize(("payload", "field"), REFUSED, ids=[f for _, f in REFUSED])
def test_api_refuses_what_secure_aggregation_cannot_honour(backend, payload: dict, field: str) -> None:
    with backend.client() as client:
        response = client.post("/training/start", json={"secure_aggregation": "secaggplus", **payload})
        assert response.status_code == 422, response.text
        (error,) = [e for e in response.json()["detail"] if e["loc"] == ["body", field]]
        assert "secure aggregation" in error["msg"] or "secure-aggregation" in error["msg"], error


def _run_losing_a_node(start_federation, tmp_path: Path, overrides: dict) -> tuple[RunOutcome, int]:
    """One SecAgg+ round on 4 nodes; the fourth SuperNode (and its executor) is killed while its ClientApp
    trains — after the key exchange, before its masked model is sent: the dropout SecAgg+ is built for."""
    faults = tmp_path / "faults"
    federation = start_federation(NODES, extra_env=fault_env({NODES - 1: "hang"}, faults))
    lost = node_ids(federation)[NODES - 1]
    killed: list[str] = []

    def kill_when_training() -> None:
        deadline = time.monotonic() + 300
        while hung_pid(faults, "hang", NODES - 1) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        for process in federation.processes:
            if process.name in (f"supernode-{NODES}", f"superexec-clientapp-{NODES}"):
                launcher.kill_process(process)
                killed.append(process.name)

    killer = threading.Thread(target=kill_when_training, daemon=True)
    killer.start()
    outcome = run_training(federation, {**SMALL, **SECAGG, "num-server-rounds": 1, "round-timeout": 90.0, **overrides})
    killer.join(timeout=5)
    assert len(killed) == 2, (killed, outcome.flower_status, [e.get("reason") for e in outcome.of("run_failed")])
    return outcome, lost


def test_a_node_lost_within_the_threshold_does_not_fail_the_round(start_federation, tmp_path: Path) -> None:
    outcome, lost = _run_losing_a_node(start_federation, tmp_path, {})  # 3 shares, 2 needed
    assert outcome.flower_status == "finished:completed", [e.get("reason") for e in outcome.of("run_failed")]
    (finished,) = outcome.of("round_finished")
    assert lost not in [c["node_id"] for c in finished["clients"]] and len(finished["clients"]) == NODES - 1
    assert [f["node_id"] for f in finished["failures"]] == [lost], finished["failures"]
    assert finished["accuracy"] > 0.1


def test_a_node_lost_beyond_the_threshold_fails_the_run_with_the_reason(start_federation, tmp_path: Path) -> None:
    # Every node shares its key with all four; 4 shares are needed: one lost node is one too many.
    outcome, _ = _run_losing_a_node(start_federation, tmp_path, {"secagg-num-shares": 5, "secagg-reconstruction-threshold": 4})
    assert outcome.flower_status == "finished:failed", outcome.events[-3:]
    (failed,) = outcome.of("run_failed")
    print(failed["reason"])
    assert "secure aggregation halted" in failed["reason"] and "secagg-reconstruction-threshold=4" in failed["reason"]
    assert "3 of 4 selected nodes" in failed["reason"] and "collect masked vectors stage" in failed["reason"]
    assert not outcome.of("round_finished")


def test_the_client_side_recognises_flowers_secaggplus_messages() -> None:
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    from flowerbed_app.algorithms import secagg_client

    # Our mod wrapper passes every message without this record untouched: it must be Flower's name.
    assert secagg_client.SECAGG_RECORD == RECORD_KEY_CONFIGS
