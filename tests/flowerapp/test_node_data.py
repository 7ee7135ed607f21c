"""Sites train on their own data (data-source=node): real SuperLink, SuperNodes and ClientApps.

One 3-node federation serves the whole module (federations cost seconds to start): each
SuperNode's data directory stays the same, and each test puts other files into it — the
ClientApps' cache is keyed by the directory's listing, so a test never sees the last one's data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import running_federation
from federation_runs import node_ids, run_training

from flowerbed.demo_data import write_breast_cancer, write_fashion_mnist
from flowerbed_app.task.data_description import DataDisagreement, agree, describe, federated_statistics
from flowerbed_app.task.node_files import RawData

pytestmark = pytest.mark.federation
SITES = 3
FAST = {"data-source": "node", "round-timeout": 120.0, "node-wait-timeout": 30.0, "fraction-evaluate": 1.0}


@pytest.fixture(scope="module")
def site_federation(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("node-data")
    dirs = [root / "sites" / f"site-{i + 1}" for i in range(SITES)]
    for d in dirs:
        d.mkdir(parents=True)
    with running_federation(root / "federation", SITES, node_data=dirs) as federation:
        yield federation, dirs, root


def _fill(dirs: list[Path], sources: list[Path | None]) -> None:
    """Each site's directory becomes a copy of its source (None: empty)."""
    for directory, source in zip(dirs, sources, strict=True):
        shutil.rmtree(directory)
        if source is None:
            directory.mkdir()
        else:
            shutil.copytree(source, directory)


def test_three_hospitals_train_an_mlp_on_their_own_tables(site_federation):
    federation, dirs, root = site_federation
    written = write_breast_cancer(root / "demo", SITES, seed=0)
    _fill(dirs, written)
    sizes = [len(pd.read_csv(d / "records.csv")) for d in written]
    assert len(set(sizes)) == SITES  # uneven sites

    outcome = run_training(
        federation,
        {
            **FAST,
            "model": "mlp",
            "num-server-rounds": 3,
            "fraction-train": 1.0,
            "min-nodes": 3,
            "min-available-nodes": 3,
            "learning-rate": 0.05,
            "local-epochs": 2,
            "batch-size": 16,
        },
    )
    assert outcome.flower_status == "finished:completed", [e.get("reason") for e in outcome.events]
    (described,) = outcome.of("data_described")
    assert not described["failures"] and len(described["nodes"]) == SITES
    assert all(n["format"] == "table" and len(n["columns"]) == 30 for n in described["nodes"])
    assert all(set(n["classes"]) == {"benign", "malignant"} for n in described["nodes"])
    assert not any("feature_mean" in n or "feature_var" in n for n in described["nodes"])  # per-site statistics stay put
    rounds = outcome.of("round_finished")
    assert len(rounds) == 3 and all(r["accuracy_kind"] == "federated" for r in rounds)
    # The run's accuracy is the example-weighted federated evaluation of each round's model.
    assert all(r["accuracy"] == r["federated_evaluation"]["eval-accuracy"] for r in rounds)
    assert rounds[-1]["accuracy"] >= 0.93, [r["accuracy"] for r in rounds]
    (finished,) = outcome.of("run_finished")
    assert finished["accuracy_kind"] == "federated" and finished["accuracy"] == rounds[-1]["accuracy"]
    meta = json.loads(Path(outcome.of("checkpoint_saved")[-1]["path"]).with_suffix(".json").read_text())
    assert meta["accuracy_kind"] == "federated" and meta["input"]["feature_columns"][0] == "area error"
    assert len(meta["input"]["feature_mean"]) == 30 and meta["input"]["classes"] == ["benign", "malignant"]


def test_a_site_with_other_columns_fails_the_run_before_round_one(site_federation):
    federation, dirs, root = site_federation
    written = write_breast_cancer(root / "demo-columns", SITES, seed=1)
    table = pd.read_csv(written[2] / "records.csv")
    table.drop(columns=["mean radius"]).rename(columns={"worst area": "area (worst)"}).to_csv(
        written[2] / "records.csv", index=False
    )
    _fill(dirs, written)

    outcome = run_training(federation, {**FAST, "model": "mlp", "num-server-rounds": 2, "min-nodes": 2})
    assert outcome.flower_status == "finished:failed"
    assert not outcome.of("round_started")
    (failed,) = outcome.of("run_failed")
    odd_node = node_ids(federation)[2]
    reason = failed["reason"]
    assert f"node {odd_node} (site 'site-3')" in reason, reason
    assert "extra area (worst)" in reason and "missing mean radius, worst area" in reason, reason
    assert str(node_ids(federation)[0]) not in reason


def test_image_folders_train_a_cnn_and_an_empty_site_is_only_its_own_failure(site_federation):
    federation, dirs, root = site_federation
    written = write_fashion_mnist(root / "demo-images", 2, per_site=150, seed=0)
    _fill(dirs, [*written, None])

    outcome = run_training(
        federation,
        {
            **FAST,
            "model": "cnn",
            "num-server-rounds": 3,
            "fraction-train": 1.0,
            "min-nodes": 2,
            "min-available-nodes": 2,
            "learning-rate": 0.02,  # at 0.05 round 3 could overshoot (0.49, 0.58, 0.38 seen in one CI run)
            "local-epochs": 2,
            "validation-fraction": 0.3,  # 45 images per site: a rise is not noise
        },
    )
    assert outcome.flower_status == "finished:completed", [e.get("reason") for e in outcome.events]
    (described,) = outcome.of("data_described")
    empty_node = node_ids(federation)[2]
    (failure,) = described["failures"]
    assert failure["node_id"] == empty_node and "is empty" in failure["reason"]
    assert all(n["image_shape"] == [1, 28, 28] and len(n["classes"]) == 10 for n in described["nodes"])
    rounds = outcome.of("round_finished")
    assert [f["node_id"] for f in rounds[0]["failures"]] == [empty_node]
    assert all(empty_node not in r["selected"] and len(r["clients"]) == 2 for r in rounds)
    accuracies = [r["accuracy"] for r in rounds]
    print("federated accuracy per round:", accuracies)
    assert accuracies[-1] > accuracies[0] + 0.05 and accuracies[-1] > 0.3, accuracies


def _raw(labels: list[str], columns: tuple[str, ...] = ("a", "b")) -> RawData:
    x = np.arange(len(labels) * len(columns), dtype=np.float64).reshape(len(labels), len(columns))
    return RawData("table", np.asarray(labels, dtype=object), x, columns=columns)


def test_small_classes_are_never_reported_exactly():
    """k-anonymity: a class under k examples shows as '< k', and the total cannot give it away."""
    raw = _raw(["common"] * 40 + ["rare"] * 3)
    description = describe(raw, "site", 0.1, 0, k=5)
    assert description["classes"] == {"common": 40, "rare": "< 5"}
    assert description["examples"] == 45 and description["examples"] - 40 != 3
    assert "3" not in json.dumps(description["classes"]) and "43" not in json.dumps(description)
    plain = describe(_raw(["x"] * 6 + ["y"] * 5), "site", 0.1, 0, k=5)
    assert plain["classes"] == {"x": 6, "y": 5} and plain["examples"] == 11 and plain["examples_rounded_up_to"] is None


def test_federated_statistics_equal_the_pooled_ones_and_columns_must_agree():
    rng = np.random.default_rng(0)
    parts = [rng.normal(i, i + 1, size=(n, 3)) for i, n in enumerate((50, 20, 7))]
    mean, std = federated_statistics([p.mean(0) for p in parts], [p.var(0) for p in parts], [len(p) for p in parts])
    pooled = np.concatenate(parts)
    assert np.allclose(mean, pooled.mean(0)) and np.allclose(std, pooled.std(0))
    a = describe(_raw(["x"] * 10 + ["y"] * 10), "one", 0.1, 0)
    b = describe(_raw(["x"] * 10 + ["y"] * 10, ("a", "c")), "two", 0.1, 0)
    with pytest.raises(
        DataDisagreement, match=r"node 2 \(site 'two'\) has different columns than the others: extra c; missing b"
    ):
        agree({1: a, 2: b, 3: a})
    c = describe(_raw(["yes"] * 10 + ["no"] * 10), "three", 0.1, 0)
    with pytest.raises(DataDisagreement, match=r"node 3 \(site 'three'\) has classes no, yes, which no other node has"):
        agree({1: a, 2: a, 3: c})


def test_a_colour_folder_trains_resnet18_at_its_own_size_and_a_corrupt_image_names_itself(tmp_path):
    """3-channel 32×32 PNGs of any source size: read by Pillow, converted, one resnet18 step trains."""
    from PIL import Image

    from flowerbed_app.task.data_description import agree
    from flowerbed_app.task.networks import create_model
    from flowerbed_app.task.node_data import convert
    from flowerbed_app.task.node_files import NodeDataError, read_raw
    from flowerbed_app.task.training import train

    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (tmp_path / name).mkdir()
        for i in range(3):
            pixels = np.clip(rng.normal(colour, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(tmp_path / "red" / "big.png")  # resized to the run's size
    raw = read_raw(tmp_path, "label")
    assert raw.format == "images" and raw.image_shape == (3, 32, 32)
    run = agree({1: describe(raw, "colours", 0.2, 0)})
    assert run.conversion.input_shape == (3, 32, 32) and run.conversion.classes == ("blue", "red")
    x, y = convert(raw, run.conversion)
    assert x.shape == (7, 3, 32, 32) and x.dtype == np.uint8 and sorted(set(y.tolist())) == [0, 1]
    model = create_model("resnet18", 2, run.conversion.input_shape)
    result = train(model, x, y, learning_rate=0.01, momentum=0.9, epochs=1, batch_size=7, seed=0)
    assert result.num_examples == 7 and result.steps == 1 and np.isfinite(result.loss)

    (tmp_path / "blue" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(NodeDataError, match=r"cannot read image blue/broken.png"):
        read_raw(tmp_path, "label")


def test_node_settings_are_checked_before_a_run_starts():
    from flowerbed.runs.run_config import FieldError, TrainingConfig
    from flowerbed_app.run_settings import RunSettings, SettingsError

    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config({"model": "mlp"})
    assert err.value.key == "model" and "data-source=node" in err.value.reason
    with pytest.raises(SettingsError) as err:
        RunSettings.from_run_config({"data-source": "node", "evaluate-every": 2})
    assert err.value.key == "evaluate-every"
    with pytest.raises(FieldError) as api_err:
        TrainingConfig(model="mlp").validate_domain()
    assert api_err.value.field == "model"
    config = TrainingConfig(model="mlp", data_source="node", label_column="diagnosis")
    assert config.validate_domain().to_run_config()["label-column"] == "diagnosis"
    assert config.validate_domain().data_source == "node"
