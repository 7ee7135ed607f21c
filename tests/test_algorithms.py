"""Unit tests of strategies, selection, DP accounting and compression (no Flower processes)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from privacy_reference import opacus_epsilon

from flowerbed_app import client_selection, privacy, update_compression
from flowerbed_app.models import create_model
from flowerbed_app.partition_cache import PartitionSpec, load_partition
from flowerbed_app.progress_events import EventEmitter
from flowerbed_app.run_settings import RunSettings, SettingsError
from flowerbed_app.strategies import STRATEGIES, build_strategy
from flowerbed_app.training import DpSgd, seeded_model, train

DATASET = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    part = load_partition(PartitionSpec(DATASET, "iid", 3, 0, 0.5, 42, 0.1))
    return part.x_train[:200], part.y_train[:200]


def _train(data, seed: int = 3, **kwargs):
    model = seeded_model(lambda: create_model("cnn"), 11)
    result = train(model, *data, learning_rate=0.05, momentum=0.9, epochs=1, batch_size=50, seed=seed, **kwargs)
    return model, result


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"strategy": "fedsgd"}, "strategy"),
        ({"selection": "oracle"}, "selection"),
        ({"dp": "global"}, "dp"),
        ({"compression": "zip"}, "compression"),
        ({"compression-ratio": 0.0}, "compression-ratio"),
        ({"compression-ratio": 1.5}, "compression-ratio"),
        ({"dp": "local", "compression": "topk"}, "compression"),
        ({"dp": "central", "compression": "int8"}, "compression"),
        ({"dp": "local", "model": "resnet18"}, "model"),
        ({"dp": "local", "dp-noise-multiplier": 0.0}, "dp-noise-multiplier"),
        ({"dp": "local", "dp-delta": 1.0}, "dp-delta"),
        ({"dp": "local", "dp-max-grad-norm": 0.0}, "dp-max-grad-norm"),
        ({"dp": "central", "dp-clipping-norm": -1.0}, "dp-clipping-norm"),
        ({"dp": "local", "strategy": "fedprox", "proximal-mu": 0.1}, "proximal-mu"),
        ({"strategy": "krum", "krum-num-malicious": 1, "min-nodes": 4, "min-available-nodes": 4}, "krum-num-malicious"),
        ({"strategy": "krum", "krum-num-malicious": 1, "min-nodes": 2}, "krum-num-malicious"),
        ({"proximal-mu": -0.1}, "proximal-mu"),
        ({"trim-beta": 0.5}, "trim-beta"),
        ({"beta-1": 1.0}, "beta-1"),
        ({"tau": 0.0}, "tau"),
        ({"server-momentum": 1.0}, "server-momentum"),
        ({"selection-explore": 0.0}, "selection-explore"),
    ],
)
def test_invalid_algorithm_settings_name_the_key(overrides, key):
    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config(overrides)
    assert err.value.key == key


def test_valid_combinations_are_accepted():
    RunSettings.from_run_config({"strategy": "fedprox", "proximal-mu": 0.0})  # mu=0: fedavg, allowed
    RunSettings.from_run_config({"strategy": "krum", "krum-num-malicious": 1, "min-nodes": 5, "min-available-nodes": 5})
    RunSettings.from_run_config({"dp": "central", "strategy": "fedmedian", "selection": "performance"})
    RunSettings.from_run_config({"compression": "topk+int8", "compression-ratio": 1.0, "strategy": "fedadam"})


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("dp", ["none", "central"])
def test_every_strategy_is_flowers_class_instrumented(name, dp):
    settings = RunSettings.from_run_config({"strategy": name, "dp": dp, "min-nodes": 3, "min-available-nodes": 3})
    built = build_strategy(settings, EventEmitter("t", 1), 3, 4, 0)
    flower_cls = STRATEGIES[name][0]
    assert isinstance(built.instrumented, flower_cls) and type(built.instrumented) is not flower_cls
    assert type(built.instrumented).__name__ == f"Flowerbed{flower_cls.__name__}"
    if dp == "central":
        assert built.runner.strategy is built.instrumented  # Flower's DP wrapper around ours
        assert built.runner.num_sampled_clients == 3 and built.runner.clipping_norm == settings.dp_clipping_norm
    else:
        assert built.runner is built.instrumented


def test_strategy_parameters_come_from_the_run_config():
    def build(overrides):
        return build_strategy(RunSettings.from_run_config(overrides), EventEmitter("t", 1), 2, 2, 0).instrumented

    assert build({"strategy": "fedprox", "proximal-mu": 0.3}).proximal_mu == 0.3
    assert build({"strategy": "fedavgm", "server-momentum": 0.7}).server_momentum == 0.7
    assert build({"strategy": "fedtrimmedavg", "trim-beta": 0.1}).beta == 0.1
    adam = build({"strategy": "fedadam", "server-eta": 0.05, "tau": 0.01, "beta-1": 0.8, "beta-2": 0.9})
    assert (adam.eta, adam.tau, adam.beta_1, adam.beta_2) == (0.05, 0.01, 0.8, 0.9)
    assert build({"strategy": "krum", "krum-num-malicious": 1, "min-nodes": 5, "min-available-nodes": 5}).num_malicious_nodes == 1


# --- fedprox ----------------------------------------------------------------------------


def test_proximal_mu_zero_is_plain_training_bitwise(data):
    plain, plain_result = _train(data)
    prox, prox_result = _train(data, proximal_mu=0.0)
    for (name, a), b in zip(plain.state_dict().items(), prox.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert plain_result.loss == prox_result.loss


def test_proximal_term_pulls_the_update_towards_the_global_model(data):
    start = seeded_model(lambda: create_model("cnn"), 11).state_dict()

    def drift(model):
        return sum(float(((model.state_dict()[k] - v) ** 2).sum()) for k, v in start.items())

    plain, _ = _train(data)
    weak, _ = _train(data, proximal_mu=0.1)
    strong, _ = _train(data, proximal_mu=10.0)
    assert not all(torch.equal(plain.state_dict()[k], weak.state_dict()[k]) for k in start)
    assert drift(strong) < drift(weak) <= drift(plain) * 1.01
    # Explicit anchors act like the default snapshot of the entry weights.
    anchored, _ = _train(data, proximal_mu=10.0, global_params=[t.clone() for t in start.values()])
    for k in start:
        assert torch.allclose(anchored.state_dict()[k], strong.state_dict()[k], atol=1e-6)


# --- selection --------------------------------------------------------------------------


def test_performance_selection_prefers_good_nodes_and_starves_none():
    nodes = list(range(10))
    quality = {n: -float(n) for n in nodes}  # node 0 best (lowest val loss), node 9 worst
    rng = random.Random(0)
    k, explore = 3, 0.3  # one exploration slot, two for the best scores
    bound = client_selection.starvation_bound(len(nodes), k, explore)
    scores: dict[int, float] = {}
    last: dict[int, int] = {}
    picked: Counter[int] = Counter()
    rounds = 40
    for r in range(1, rounds + 1):
        choice = client_selection.select(nodes, k, scores, last, explore, rng)
        assert len(choice.chosen) == k == len(set(choice.chosen))
        assert set(choice.explored) <= set(choice.chosen)
        for n in choice.chosen:
            # a node's last gap before this pick never exceeds the bound
            assert r - last.get(n, 0) <= bound, (n, r, last.get(n))
            last[n] = r
            scores[n] = quality[n] + rng.gauss(0, 0.1)
            picked[n] += 1
        if r == bound:
            assert set(last) == set(nodes)  # every node at least once within the bound
    for n in nodes:
        assert rounds - last[n] < bound
    assert picked[0] > 2 * picked[9] and picked[1] > 2 * picked[8]
    assert picked[0] + picked[1] > rounds  # the best two hold the exploitation slots


def test_selection_with_everyone_needed_explores_nothing():
    choice = client_selection.select([1, 2, 3], 3, {1: 0.0}, {}, 0.5, random.Random(0))
    assert sorted(choice.chosen) == [1, 2, 3] and sorted(choice.explored) == [2, 3]  # unscored: not picked for a score
    assert client_selection.explore_slots(3, 3, 0.5) == 0 and client_selection.starvation_bound(3, 3, 0.5) == 1


# --- differential privacy ---------------------------------------------------------------


def test_local_dp_epsilon_accumulates_across_rounds_like_opacus(data):
    model = seeded_model(lambda: create_model("cnn"), 11)
    history: list = []
    epsilons = []
    for rnd in range(3):
        model.eval()  # as in the ClientApp, which evaluates the received model first
        result = train(
            model, *data, learning_rate=0.05, momentum=0.0, epochs=1, batch_size=50, seed=rnd, dp=DpSgd(1.2, 1.0, history)
        )
        # carried through context.state as a ConfigRecord-compatible dict
        history = privacy.history_from_config(privacy.history_to_config(result.privacy_history))
        epsilons.append(privacy.epsilon(history, 1e-5))
        assert result.steps == 4
        assert epsilons[-1] == pytest.approx(opacus_epsilon(1.2, 0.25, 4 * (rnd + 1), 1e-5), rel=1e-12)
    assert all(np.isfinite(epsilons)) and 0 < epsilons[0] < epsilons[1] < epsilons[2]
    assert sum(p.abs().sum() for p in model.parameters()) > 0 and not hasattr(model, "_module")


def test_central_dp_epsilon_is_one_gaussian_release_per_round():
    accountant = privacy.CentralAccountant(noise_multiplier=2.0, delta=1e-5)
    assert accountant.spent() == 0.0
    epsilons = [accountant.release() for _ in range(3)]
    assert epsilons == pytest.approx([opacus_epsilon(2.0, 1.0, n, 1e-5) for n in (1, 2, 3)], rel=1e-12)
    assert epsilons[0] < epsilons[1] < epsilons[2] and accountant.spent() == epsilons[-1]


# --- compression ------------------------------------------------------------------------


def _cnn_arrays(seed: int) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in seeded_model(lambda: create_model("cnn"), seed).state_dict().items()}


@pytest.mark.parametrize("scheme", ["topk", "int8", "topk+int8"])
def test_compressed_update_is_smaller_and_decodes_within_its_error(scheme):
    base, new = _cnn_arrays(1), _cnn_arrays(2)
    sent, residual = update_compression.compress_update(new, base, None, scheme, 0.1)
    dense_bytes = sum(a.nbytes for a in new.values())
    sent_bytes = sum(a.nbytes for a in sent.values())
    assert dense_bytes / sent_bytes >= {"topk": 6.0, "int8": 3.9, "topk+int8": 7.5}[scheme]
    for key, array in sent.items():
        suffix = key.rpartition(update_compression.SEP)[2]
        assert array.dtype == {"idx": np.int32, "val": np.float16, "q": np.int8, "scale": np.float32, "shape": np.int64}[suffix]
    decoded = update_compression.decompress_update(sent, base)
    for name in new:
        # exact bookkeeping: what the server sees + what the client keeps = the true update
        np.testing.assert_allclose(decoded[name] - base[name] + residual[name], new[name] - base[name], atol=1e-6)


def test_error_feedback_delivers_the_whole_update_over_rounds():
    rng = np.random.default_rng(0)
    shape = {"w": (50, 40), "b": (40,)}
    residual = None
    true_total = {k: np.zeros(s, np.float32) for k, s in shape.items()}
    seen_total = {k: np.zeros(s, np.float32) for k, s in shape.items()}
    base = {k: rng.normal(size=s).astype(np.float32) for k, s in shape.items()}
    for _ in range(30):
        update = {k: rng.normal(scale=0.01, size=s).astype(np.float32) for k, s in shape.items()}
        new = {k: base[k] + update[k] for k in shape}
        sent, residual = update_compression.compress_update(new, base, residual, "topk+int8", 0.05)
        decoded = update_compression.decompress_update(sent, base)
        for k in shape:
            true_total[k] += new[k] - base[k]
            seen_total[k] += decoded[k] - base[k]
    for k in shape:
        # nothing is lost: the server's sum lags the truth by exactly the residual
        np.testing.assert_allclose(seen_total[k] + residual[k], true_total[k], atol=1e-5)
        # and without error feedback far more would be missing than the residual holds
        assert np.abs(residual[k]).sum() < 0.5 * np.abs(true_total[k]).sum()


def test_non_float_tensors_travel_dense():
    base = {"w": np.ones(10, np.float32), "steps": np.array(3, dtype=np.int64)}
    new = {"w": np.full(10, 2.0, np.float32), "steps": np.array(5, dtype=np.int64)}
    sent, _ = update_compression.compress_update(new, base, None, "topk", 0.5)
    decoded = update_compression.decompress_update(sent, base)
    assert decoded["steps"] == 5 and decoded["steps"].dtype == np.int64
    assert update_compression.is_compressed(list(sent)) and not update_compression.is_compressed(["w"])
