"""Tabular models in use: a real node-data run trains an `mlp`, then its checkpoint predicts table rows
through the real backend, exports to ONNX, and the dashboard's "Try it" offers a row form.

Two SuperNodes, each with a site's share of the demo breast-cancer table (`flowerbed demo-data`), a real
`flowerbed serve` on a free port wired to them; the run is started through the API (data_source=node, 2
rounds). The backend mirrors runs into an MLflow server that is not there (a closed port on 127.0.0.1),
so the same run shows the MLflow warning on its page. Expected outputs are computed here from the
checkpoint's weights with numpy's own arithmetic, not with the backend's code. Chromium: Debian's,
through test_dashboard.py's helpers; screenshots in test-artifacts/try-it-row.png and
run-mlflow-warning.png.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from backend_fixture import TERMINAL, Backend, spawn_backend, start_run, wait_for
from conftest import free_port, running_federation
from dashboard_pages import ARTIFACTS, chromium_browser, dashboard_page, open_dashboard  # noqa: F401 (fixtures)
from playwright.sync_api import Page, expect

from flowerbed.demo_data import write_breast_cancer
from flowerbed_app.runtime import checkpoints
from flowerbed_app.task.networks import create_model

pytestmark = pytest.mark.federation
SITES = 2


@dataclass(frozen=True)
class TabularRun:
    backend: Backend
    model_id: str
    meta: dict[str, Any]
    rows: pd.DataFrame  # every site's rows, label included
    module: Any  # the checkpoint's weights in a fresh torch MLP, eval mode
    image_model_id: str
    run_id: str
    mlflow_uri: str


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TabularRun]:
    root = tmp_path_factory.mktemp("row-predict")
    sites = write_breast_cancer(root / "demo", SITES, seed=0)
    with running_federation(root / "federation", SITES, node_data=sites) as federation:
        data_dir = Path(federation.data_dir)
        mlflow_uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there: every export fails
        env = {"FLOWERBED_MLFLOW_TRACKING_URI": mlflow_uri, "FLOWERBED_MLFLOW_RETRY_SECONDS": "1"}
        process = spawn_backend(data_dir, federation.superlink_url, env=env)
        try:
            backend = Backend(process.base_url, process.token, federation, data_dir)
            with backend.client() as client:
                run_id = start_run(
                    client,
                    model="mlp",
                    data_source="node",
                    num_rounds=2,
                    learning_rate=0.05,
                    local_epochs=2,
                    batch_size=16,
                    max_train_examples=0,
                )["run_id"]
                detail = wait_for(
                    lambda: (d := client.get(f"/training/{run_id}").json())["status"] in TERMINAL and d, 600, "the mlp run"
                )
                assert detail["status"] == "completed", detail["error"]
                items = client.get("/models", params={"run_id": run_id}).json()["items"]
            meta = checkpoints.find_checkpoint(data_dir / "models", items[-1]["model_id"])
            spec = meta["input"]
            module = create_model("mlp", len(spec["classes"]), tuple(spec["input_shape"]))
            module.load_state_dict(checkpoints.load_state_dict(meta))
            module.eval()
            # An image model in the same store, for "a row to an image model" (its weights do not matter).
            image = checkpoints.save_checkpoint(
                data_dir / "models", "row-predict-cnn", 1, create_model("cnn").state_dict(), {"model": "cnn"}
            )
            rows = pd.concat([pd.read_csv(d / "records.csv") for d in sites], ignore_index=True)
            yield TabularRun(backend, meta["model_id"], meta, rows, module, image["model_id"], run_id, mlflow_uri)
        finally:
            process.stop()


def _expected_probabilities(run: TabularRun, rows: pd.DataFrame) -> np.ndarray:
    """The model's probabilities for raw rows, standardised here by hand with the checkpoint's statistics."""
    import torch

    spec = run.meta["input"]
    raw = rows[spec["feature_columns"]].to_numpy(dtype=np.float64)
    standardised = (raw - np.array(spec["feature_mean"])) / np.array(spec["feature_std"])
    with torch.inference_mode():
        return run.module(torch.from_numpy(standardised.astype(np.float32))).exp().numpy()


def _row(rows: pd.DataFrame, index: int, columns: list[str]) -> dict[str, float]:
    return {c: float(rows.iloc[index][c]) for c in columns}


def test_the_checkpoint_records_what_a_row_needs_and_the_api_lists_it(tabular_run: TabularRun) -> None:
    spec = tabular_run.meta["input"]
    assert spec["format"] == "table" and spec["classes"] == ["benign", "malignant"]
    columns = [c for c in tabular_run.rows.columns if c != "label"]
    assert sorted(spec["feature_columns"]) == sorted(columns) and len(spec["feature_std"]) == len(columns) == 30
    with tabular_run.backend.client() as client:
        info = client.get(f"/models/{tabular_run.model_id}").json()
    assert info["model"] == "mlp"
    assert info["input"]["kind"] == "table" and info["input"]["columns"] == spec["feature_columns"]
    assert info["input"]["classes"] == ["benign", "malignant"] and info["input"]["feature_mean"] == spec["feature_mean"]


def test_rows_are_standardised_as_in_training_and_ranked_by_the_model(tabular_run: TabularRun) -> None:
    columns = tabular_run.meta["input"]["feature_columns"]
    sample = tabular_run.rows.sample(40, random_state=0)
    expected = _expected_probabilities(tabular_run, sample)
    right = 0
    with tabular_run.backend.client() as client:
        for i in range(len(sample)):
            response = client.post(f"/models/{tabular_run.model_id}/predict", json={"features": _row(sample, i, columns)})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model_id"] == tabular_run.model_id and body["model"] == "mlp"
            ranked = body["predictions"]
            assert [p["label"] for p in ranked] == [["benign", "malignant"][j] for j in np.argsort(-expected[i], kind="stable")]
            assert [p["class_index"] for p in ranked] == list(np.argsort(-expected[i], kind="stable"))
            assert np.allclose([p["probability"] for p in ranked], np.sort(expected[i])[::-1], atol=1e-5)
            right += ranked[0]["label"] == sample.iloc[i]["label"]
    assert right >= 34, f"{right}/40 rows classified right: the standardisation may differ from training's"

    # Unstandardised values would give other probabilities: the check above can tell the difference.
    import torch

    raw = sample[columns].to_numpy(dtype=np.float32)
    with torch.inference_mode():
        unscaled = tabular_run.module(torch.from_numpy(raw)).exp().numpy()
    assert float(np.abs(unscaled - expected).max()) > 1e-2


def test_onnx_export_of_the_mlp_gives_pytorchs_outputs(tabular_run: TabularRun) -> None:
    import onnx
    import onnxruntime
    import torch

    with tabular_run.backend.client() as client:
        response = client.get(f"/models/{tabular_run.model_id}/export", params={"format": "onnx"}, timeout=300)
    assert response.status_code == 200, response.text
    session = onnxruntime.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]
    metadata = {p.key: p.value for p in onnx.load_model_from_string(response.content).metadata_props}
    preprocessing = json.loads(metadata["flowerbed.preprocessing"])
    spec = tabular_run.meta["input"]
    assert preprocessing == {"columns": spec["feature_columns"], "mean": spec["feature_mean"], "std": spec["feature_std"]}
    assert json.loads(metadata["flowerbed.class_names"]) == ["benign", "malignant"]
    assert metadata["flowerbed.architecture"] == "mlp"

    # What a user of the file does: the columns in its order, standardised with its statistics.
    raw = tabular_run.rows[preprocessing["columns"]].to_numpy(dtype=np.float64)
    features = ((raw - np.array(preprocessing["mean"])) / np.array(preprocessing["std"])).astype(np.float32)
    (outputs,) = session.run(["log_probs"], {"features": features})
    with torch.inference_mode():
        expected = tabular_run.module(torch.from_numpy(features)).numpy()
    assert outputs.shape == expected.shape == (len(raw), 2)
    assert float(np.abs(outputs - expected).max()) <= 1e-4
    assert (outputs.argmax(1) == expected.argmax(1)).all()

    with tabular_run.backend.client() as client:
        scripted = client.get(f"/models/{tabular_run.model_id}/export", params={"format": "torchscript"}, timeout=300)
    assert scripted.status_code == 200, scripted.text


def _bad_rows(columns: list[str]) -> dict[str, tuple[Any, list[tuple[list[str], str]]]]:
    """name → (JSON body or raw bytes, [(a 422 error's loc, a phrase of its message), ...])."""
    good = dict.fromkeys(columns, 1.0)
    first, second = columns[0], columns[1]
    without = {c: v for c, v in good.items() if c != first}
    return {
        "missing column": (
            {"features": without},
            [(["body", "features", first], f"missing column {first!r}")],
        ),
        "unknown column": (
            {"features": {**good, "shoe size": 42}},
            [(["body", "features", "shoe size"], "unknown column 'shoe size'; the model's columns are")],
        ),
        "text value": (
            {"features": {**good, first: "large"}},
            [(["body", "features", first], f'column {first!r} must be a finite number, got "large"')],
        ),
        "null, boolean and NaN": (
            {"features": {**good, first: None, second: True, columns[2]: float("nan")}},
            [
                (["body", "features", first], "must be a finite number, got null"),
                (["body", "features", second], "must be a finite number, got true"),
                (["body", "features", columns[2]], "must be a finite number, got NaN"),
            ],
        ),
        "not an object": ({"features": list(good.values())}, [(["body", "features"], 'send one row as {"features"')]),
        "no features": ({"rows": [good]}, [(["body", "features"], 'send one row as {"features"')]),
        "extra field": ({"features": good, "top": 3}, [(["body", "top"], "unknown field")]),
        "not JSON": (b"{features: 1", [(["body"], "not valid JSON")]),
        "empty": (b"", [(["body"], "empty body")]),
    }


@pytest.mark.parametrize("case", list(_bad_rows([f"c{i}" for i in range(3)])))
def test_bad_rows_get_422_naming_each_column(case: str, tabular_run: TabularRun) -> None:
    body, errors = _bad_rows(tabular_run.meta["input"]["feature_columns"])[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()  # json.dumps writes NaN as NaN
    with tabular_run.backend.client() as client:
        response = client.post(
            f"/models/{tabular_run.model_id}/predict", content=content, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422, (case, response.status_code, response.text)
    detail = response.json()["detail"]
    assert len(detail) == len(errors), detail
    for (loc, phrase), error in zip(errors, detail, strict=True):
        assert error["loc"] == loc and phrase in error["msg"], (case, error)


def test_an_image_to_a_table_model_and_a_row_to_an_image_model_say_why(tabular_run: TabularRun) -> None:
    from model_fixture import png_of

    columns = tabular_run.meta["input"]["feature_columns"]
    with tabular_run.backend.client() as client:
        image = client.post(
            f"/models/{tabular_run.model_id}/predict",
            content=png_of(np.zeros((28, 28), np.uint8)),
            headers={"Content-Type": "image/png"},
        )
        row = client.post(f"/models/{tabular_run.image_model_id}/predict", json={"features": _row(tabular_run.rows, 0, columns)})
        form = client.post(f"/models/{tabular_run.model_id}/predict", data={"mean radius": "1"})
        huge = client.post(
            f"/models/{tabular_run.model_id}/predict",
            content=b'{"features": {"a": "' + b"x" * (300 << 10) + b'"}}',
            headers={"Content-Type": "application/json"},
        )
    assert image.status_code == 422, image.text
    (error,) = image.json()["detail"]
    assert error["loc"] == ["header", "content-type"]
    assert "(mlp) takes a table row, not an image" in error["msg"] and "application/json" in error["msg"], error
    assert row.status_code == 422, row.text
    (error,) = row.json()["detail"]
    assert error["loc"] == ["header", "content-type"]
    assert "(cnn) takes an image, not a table row" in error["msg"] and "28×28 PNG or JPEG" in error["msg"], error
    assert form.status_code == 422 and "takes a table row, not a body of type application/x-www-form-urlencoded" in form.text
    assert huge.status_code == 413 and "FLOWERBED_MAX_PREDICT_BODY_BYTES" in huge.json()["detail"]


def test_try_it_offers_a_row_form_for_a_table_model(tabular_run: TabularRun, page: Page) -> None:
    columns = tabular_run.meta["input"]["feature_columns"]
    malignant = tabular_run.rows[tabular_run.rows["label"] == "malignant"]
    expected = _expected_probabilities(tabular_run, malignant.iloc[:1])[0]
    assert int(expected.argmax()) == 1, "the run's model should know this malignant row"
    run_id = tabular_run.meta["run_id"]

    route = f"#/models?run_id={run_id}&try={tabular_run.model_id}"
    open_dashboard(page, tabular_run.backend.base_url, tabular_run.backend.token, route)
    card = page.get_by_test_id("try-card")
    expect(card.get_by_test_id("try-model")).to_have_value(tabular_run.model_id)
    expect(card.get_by_test_id("try-drop")).to_have_count(0)  # no image drop zone for a table model
    fields = card.get_by_test_id("try-feature")
    expect(fields).to_have_count(len(columns))
    for column, value in _row(malignant, 0, columns).items():
        card.locator(f'[data-column="{column}"]').fill(repr(value))
    card.get_by_test_id("try-submit").click()
    ranked = card.get_by_test_id("try-class")
    expect(ranked).to_have_count(2)
    expect(ranked.first).to_have_attribute("data-label", "malignant")
    expect(ranked.first).to_contain_text(f"{float(expected[1]) * 100:.1f} %")
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "try-it-row.png"))

    # A value the server refuses: its 422 reason is shown at the field it names.
    card.locator(f'[data-column="{columns[0]}"]').fill("")
    card.get_by_test_id("try-submit").click()
    error = card.get_by_test_id("state-error")
    expect(error).to_contain_text(f"column {columns[0]!r} must be a finite number")
    expect(card.locator(f'[data-column="{columns[0]}"]')).to_have_attribute("aria-invalid", "true")
    expect(ranked).to_have_count(0)


def test_the_run_page_shows_the_mlflow_warning_the_api_reports(tabular_run: TabularRun, page: Page) -> None:
    with tabular_run.backend.client() as client:
        detail = wait_for(
            lambda: (d := client.get(f"/training/{tabular_run.run_id}").json())["mlflow"]["warning"] and d,
            120,
            "the API to report the unreachable MLflow server",
        )
    warning = detail["mlflow"]["warning"]
    assert tabular_run.mlflow_uri in warning and detail["status"] == "completed", detail["mlflow"]

    open_dashboard(page, tabular_run.backend.base_url, tabular_run.backend.token, f"#/runs/{tabular_run.run_id}")
    notice = page.get_by_test_id("mlflow-warning")
    expect(notice).to_be_visible()
    expect(notice).to_have_attribute("role", "alert")
    expect(notice).to_contain_text("MLflow export behind")
    expect(notice.get_by_test_id("mlflow-warning-text")).to_have_text(warning)  # the API's words, whole
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-mlflow-warning.png"))
