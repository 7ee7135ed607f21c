"""Unit tests of the Flower App's pieces, on real data and real files (no Flower processes)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flowerbed_app.run_settings import RunSettings, SettingsError
from flowerbed_app.runtime import checkpoints
from flowerbed_app.runtime.progress_events import EventEmitter, parse_events
from flowerbed_app.task.fashion_mnist import DatasetMissingError, check_source, load_split
from flowerbed_app.task.networks import ResNet18, SimpleCNN, create_model
from flowerbed_app.task.partition_cache import PartitionSpec, load_partition, load_test_split, partition_indices

DATASET = "/usr/share/datasets/fashion-mnist"
ROOT = Path(__file__).resolve().parents[2]


def test_dataset_loads_from_idx():
    x, y = load_split(DATASET, "train")
    assert x.shape == (60_000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60_000,) and set(np.unique(y)) == set(range(10))
    xt, _ = load_split(DATASET, "test")
    assert xt.shape == (10_000, 28, 28)


def test_missing_dataset_says_how_to_fix(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        check_source(str(tmp_path))
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    assert "zalando-datasets/fashion_mnist" in str(err.value)


def test_simple_cnn_matches_seed_architecture():
    model = SimpleCNN()
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["conv1.weight"] == (32, 1, 3, 3)
    assert shapes["conv2.weight"] == (64, 32, 3, 3)
    assert shapes["fc1.weight"] == (128, 9216)
    assert shapes["fc2.weight"] == (10, 128)
    out = model(torch.zeros(4, 1, 28, 28))
    assert out.shape == (4, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(4), atol=1e-5)  # log-softmax


def test_resnet18_is_a_real_resnet18():
    model = ResNet18()
    blocks = [m for m in model.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 8  # [2, 2, 2, 2]
    assert 11_000_000 < sum(p.numel() for p in model.parameters()) < 11_300_000
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_model_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: cnn, resnet18"):
        create_model("vgg")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"model": "vgg"}, "model"),
        ({"partitioner": "shards"}, "partitioner"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"num-server-rounds": 0}, "num-server-rounds"),
        ({"fraction-train": 0.0}, "fraction-train"),
        ({"fraction-evaluate": 1.5}, "fraction-evaluate"),
        ({"min-nodes": 3, "min-available-nodes": 2}, "min-available-nodes"),
        ({"batch-size": 0}, "batch-size"),
        ({"learning-rate": "fast"}, "learning-rate"),
        ({"lerning-rate": 0.1}, "lerning-rate"),
    ],
)
def test_run_settings_reject_bad_values_naming_the_key(overrides, key):
    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config(overrides)
    assert err.value.key == key


def test_run_settings_defaults_match_the_app_pyproject():
    import tomllib

    declared = tomllib.loads((ROOT / "services/flowerapp/pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert RunSettings.from_run_config(declared).to_run_config() == RunSettings().to_run_config()
    assert set(declared) == set(RunSettings().to_run_config())


def _spec(partitioner: str, pid: int, n: int = 10, alpha: float = 0.5) -> PartitionSpec:
    return PartitionSpec(DATASET, partitioner, n, pid, alpha, 42, 0.1)


def test_iid_partitions_are_disjoint_and_cover_the_training_set():
    _, y = load_split(DATASET, "train")
    parts = [partition_indices(y, _spec("iid", i, 3)) for i in range(3)]
    joined = np.concatenate(parts)
    assert len(joined) == 60_000 and len(np.unique(joined)) == 60_000


def test_dirichlet_partitions_are_label_skewed():
    _, y = load_split(DATASET, "train")
    low = [np.bincount(y[partition_indices(y, _spec("dirichlet", i, 5, 0.1))], minlength=10) for i in range(5)]
    high = [np.bincount(y[partition_indices(y, _spec("dirichlet", i, 5, 100.0))], minlength=10) for i in range(5)]

    def skew(counts):  # mean share of the most frequent label
        return float(np.mean([c.max() / max(c.sum(), 1) for c in counts]))

    assert skew(low) > 2 * skew(high)


def test_partition_cache_is_reused_and_holds_a_validation_split(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWERBED_CACHE_DIR", str(tmp_path))
    legacy = tmp_path / "partitions" / f"{_spec('iid', 1, 3).cache_key()}.npz"  # earlier versions' single file
    legacy.parent.mkdir()
    legacy.write_bytes(b"old layout")
    first = load_partition(_spec("iid", 1, 3))
    assert not legacy.exists()  # replaced by the directory below, not left to fill the disk
    entries = list((tmp_path / "partitions").iterdir())
    assert len(entries) == 1 and sorted(p.name for p in entries[0].iterdir()) == [
        "x_train.npy",
        "x_val.npy",
        "y_train.npy",
        "y_val.npy",
    ]  # no temporary directory left behind
    mtime = (entries[0] / "x_train.npy").stat().st_mtime_ns
    second = load_partition(_spec("iid", 1, 3))
    assert (entries[0] / "x_train.npy").stat().st_mtime_ns == mtime
    assert np.array_equal(first.y_train, second.y_train)
    assert len(first.y_val) == 2000 and len(first.y_train) == 18_000
    # mapped copy-on-write: a process may change its arrays, never the cache
    assert first.x_train[0].any()
    first.x_train[0] = 0
    assert load_partition(_spec("iid", 1, 3)).x_train[0].any() and second.x_train[0].any()


def test_a_test_split_sample_is_seeded_ordered_and_drawn_from_the_whole_split():
    x, y = load_test_split(DATASET)
    xs, ys = load_test_split(DATASET, 1000, seed=42)
    assert xs.shape == (1000, *x.shape[1:]) and ys.shape == (1000,)
    rows = {row.tobytes(): i for i, row in enumerate(x)}
    picked = [rows[row.tobytes()] for row in xs]
    assert picked == sorted(picked) and picked[-1] > 5000  # in the split's order, not its first 1,000
    assert np.array_equal(ys, y[picked])
    assert np.array_equal(load_test_split(DATASET, 1000, seed=42)[1], ys)
    assert not np.array_equal(load_test_split(DATASET, 1000, seed=7)[1], ys)
    assert len(load_test_split(DATASET, 0)[1]) == len(load_test_split(DATASET, 20_000)[1]) == len(y)


def test_checkpoint_roundtrip_and_tamper_detection(tmp_path):
    model = create_model("cnn")
    meta = checkpoints.save_checkpoint(tmp_path, "run1", 3, model.state_dict(), {"model": "cnn", "metrics": {}})
    assert meta["model_id"] == "run1-round-0003"
    assert not list(tmp_path.rglob("*.tmp"))
    found = checkpoints.find_checkpoint(tmp_path, "run1-round-0003")
    loaded = checkpoints.load_state_dict(found)
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert [m["model_id"] for m in checkpoints.list_checkpoints(tmp_path)] == ["run1-round-0003"]
    with open(found["path"], "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    with pytest.raises(checkpoints.CheckpointError, match="sha256"):
        checkpoints.load_state_dict(found)


@pytest.mark.parametrize("bad", ["../etc-round-0001", "run", "run-round-x", "a/b-round-0001"])
def test_model_ids_cannot_escape_the_store(bad):
    with pytest.raises(checkpoints.CheckpointError):
        checkpoints.split_model_id(bad)


def test_progress_events_roundtrip(capsys):
    emitter = EventEmitter("r1", 7)
    emitter.emit("round_finished", round=1, accuracy=np.float32(0.5))
    text = "noise\n" + capsys.readouterr().out + "FLOWERBED_EVENT {broken\n"
    (event,) = parse_events(text)
    assert event["event"] == "round_finished" and event["accuracy"] == 0.5 and event["seq"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "vgg"], "model: unknown value 'vgg'"),
        (["--partitioner", "shards"], "partitioner: unknown value"),
        (["--partitioner", "dirichlet", "--alpha", "0"], "alpha: must be in (0, 1000000], got 0.0"),
        (["--rounds", "0"], "num-server-rounds: must be in [1, 1000], got 0"),
        (["--learning-rate", "0"], "learning-rate: must be in (0, 100], got 0.0"),  # a generated flag
        (["--set", "fraction-train=1.5"], "fraction-train: must be in (0, 1]"),
        (["--nodes", "1"], "min-available-nodes: 2 nodes required but --nodes is 1"),
        (["--set", "dataset=/nonexistent"], "apt-get install dataset-fashion-mnist"),
    ],
)
def test_cli_rejects_bad_input_before_starting_anything(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "flowerbed.cli", "train", "--data-dir", str(tmp_path), "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "error"
    assert not (tmp_path / "federation.json").exists() and not (tmp_path / "logs").exists()


def test_progress_events_are_strict_json_even_when_training_diverges(capsys):
    from flowerbed_app.runtime.progress_events import EventEmitter, parse_events

    def strict(text: str) -> dict:
        return json.loads(text, parse_constant=lambda token: pytest.fail(f"not JSON: {token}"))

    record = EventEmitter("r", 1).emit("round_finished", round=1, loss=float("nan"), clients=[{"val_loss": float("-inf")}])
    line = capsys.readouterr().out.strip()
    printed = strict(line.split(" ", 1)[1])
    assert printed["loss"] is None and printed["clients"] == [{"val_loss": None}] and printed["round"] == 1
    assert record["loss"] != record["loss"]  # the caller's own record keeps its value (NaN)
    (parsed,) = parse_events(line)
    assert parsed["loss"] is None
    (legacy,) = parse_events('FLOWERBED_EVENT {"event": "run_finished", "accuracy": NaN, "loss": Infinity}')
    assert legacy["accuracy"] is None and legacy["loss"] is None


def test_evaluate_leaves_the_model_trainable_and_contiguous() -> None:
    """evaluate() runs channels-last under inference mode; the weights must come back usable."""
    from flowerbed_app.task.training import evaluate, to_tensor

    images = np.random.default_rng(0).integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    labels = np.arange(64) % 10
    model = create_model("cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss, accuracy = evaluate(model, images, labels, batch_size=16)
    assert loss > 0 and 0 <= accuracy <= 1
    for name, tensor in model.state_dict().items():
        assert tensor.is_contiguous() and not tensor.is_inference(), name
        assert torch.equal(tensor, before[name]), name
    model.train()
    model(to_tensor(images[:8])).sum().backward()  # fails on inference tensors
    assert all(p.grad is not None for p in model.parameters())


def test_api_choices_are_the_apps():
    """The API's allowed values are declared in RunSettings; the schema must offer exactly those."""
    from typing import get_args

    from flowerbed.runs.run_config import TrainingConfig
    from flowerbed_app import run_choices as rs

    choices = {
        "model": rs.MODELS,
        "strategy": rs.STRATEGIES,
        "partitioner": rs.PARTITIONERS,
        "selection": rs.SELECTIONS,
        "dp": rs.DP_MODES,
        "compression": rs.COMPRESSIONS,
        "lr_schedule": rs.LR_SCHEDULES,
        "data_source": rs.DATA_SOURCES,
    }
    for field, valid in choices.items():
        assert get_args(TrainingConfig.model_fields[field].annotation) == valid, field


def test_cosine_schedule_decays_the_learning_rate_across_the_run():
    from flowerbed_app.task.training import scheduled_learning_rate

    assert [scheduled_learning_rate(0.1, "constant", r, 10) for r in (1, 10)] == [0.1, 0.1]
    cosine = [scheduled_learning_rate(0.1, "cosine", r, 10) for r in range(1, 11)]
    assert cosine[0] == 0.1 and all(a > b for a, b in itertools.pairwise(cosine))
    assert cosine[4] == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 0.4)))
    assert 0 < cosine[-1] < 0.003  # the last round still trains, with small steps
    assert scheduled_learning_rate(0.1, "cosine", 1, 1) == 0.1
    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config({"lr-schedule": "step"})
    assert err.value.key == "lr-schedule"


def test_weight_decay_reaches_the_clients_optimizer():
    """`weight_decay` (a declared setting) shrinks the weights the client trains, from the run config to SGD."""
    from torch import nn

    from flowerbed_app.task.training import train

    assert RunSettings.from_run_config({"weight-decay": 0.5}).weight_decay == 0.5
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64)
    norms = []
    for decay in (0.0, 0.5):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(dim=1))
        train(model, images, labels, learning_rate=0.1, momentum=0.0, weight_decay=decay, epochs=2, batch_size=16, seed=1)
        norms.append(float(model[1].weight.norm()))
    assert norms[1] < 0.9 * norms[0], norms


def test_the_runs_dropout_reaches_the_cnn_as_it_trains():
    """`dropout` (a declared setting, 0 by default) sets the cnn's dropout layers for the
    clients' training: at 0 the cnn trains bit for bit as one without dropout layers; a
    rate set in the run config changes what it learns."""
    from torch import nn

    from flowerbed_app.task.training import round_options, train

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64)

    def trained(settings: RunSettings, strip: bool = False) -> dict[str, torch.Tensor]:
        torch.manual_seed(3)
        model = create_model("cnn")
        if strip:
            model.dropout1, model.dropout2 = nn.Identity(), nn.Identity()
        options = {**round_options(settings, 1, 1), "epochs": 1, "batch_size": 16}
        train(model, images, labels, **options)
        return model.state_dict()

    default = RunSettings()
    assert default.dropout == 0.0
    without_layers = trained(default, strip=True)
    assert all(torch.equal(v, without_layers[k]) for k, v in trained(default).items())
    with_dropout = trained(RunSettings.from_run_config({"dropout": 0.5}))
    assert not all(torch.equal(v, without_layers[k]) for k, v in with_dropout.items())
    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config({"dropout": 1.0})
    assert err.value.key == "dropout"


def test_gradient_clipping_bounds_each_client_step():
    """`clip_norm` (declared, 10 by default) caps a batch gradient's L2 norm before SGD's step:
    one plain step of rate 1 then moves the weights by at most the clipping norm."""
    from torch import nn

    from flowerbed_app.task.training import train

    assert RunSettings().clip_norm == 10.0 and RunSettings.from_run_config({"clip-norm": 0}).clip_norm == 0.0
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8), np.zeros(16, dtype=np.int64)
    moved = []
    for clip in (0.0, 0.01):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(dim=1))
        before = torch.cat([p.detach().clone().flatten() for p in model.parameters()])
        train(model, images, labels, learning_rate=1.0, momentum=0.0, clip_norm=clip, epochs=1, batch_size=16, seed=1)
        moved.append(float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm()))
    assert moved[0] > 1.0 and moved[1] == pytest.approx(0.01, rel=1e-3), moved
    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config({"clip-norm": -1})
    assert err.value.key == "clip-norm"


def test_a_train_reply_validates_the_model_as_received_not_as_trained(tmp_path, monkeypatch):
    """The ClientApp validates after training (so its first batch starts sooner): the
    figures must still be those of the global model it received."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from flowerbed_app import client_app
    from flowerbed_app.task.client_inputs import capped
    from flowerbed_app.task.training import evaluate

    monkeypatch.setenv("FLOWERBED_CACHE_DIR", str(tmp_path))
    for field, value in {"run_id": 1, "node_id": 7, "task_id": 1}.items():  # what Flower's runtime sets in a ClientApp
        monkeypatch.setattr(TaskIdentity, f"_{field}", value)
    settings = RunSettings.from_run_config({"dataset": DATASET, "max-train-examples": 256, "learning-rate": 0.1})
    received = create_model(settings.model)
    content = RecordDict({"arrays": ArrayRecord(received.state_dict()), "config": ConfigRecord({"server-round": 1})})
    message = Message(content=content, dst_node_id=7, message_type="train")
    node = {"partition-id": 1, "num-partitions": 3}
    context = Context(run_id=1, node_id=7, node_config=node, state=RecordDict(), run_config=settings.to_run_config())

    reply = client_app.app(message, context)

    metrics = reply.content["metrics"]
    part = load_partition(PartitionSpec.of(settings, 1, 3))
    x_val, y_val = capped(settings, part.x_val, part.y_val)
    assert (metrics["val-loss"], metrics["val-accuracy"]) == pytest.approx(evaluate(received, x_val, y_val))
    trained = create_model(settings.model)
    trained.load_state_dict(reply.content["arrays"].to_torch_state_dict())
    assert evaluate(trained, x_val, y_val)[0] != pytest.approx(metrics["val-loss"])  # training moved the model
