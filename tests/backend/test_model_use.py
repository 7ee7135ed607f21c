"""The model leaves the platform: exports (ONNX, TorchScript, safetensors), predictions, lineage.

Against the real backend process and checkpoints written by the ServerApp's own writer
(tests/support/model_fixture.py); lineage through a real federated run that starts from one.
"""

from __future__ import annotations

import hashlib
import io
import json

import httpx
import numpy as np
import pytest
from backend_fixture import TERMINAL, Backend, start_run, wait_for
from model_fixture import TrainedCheckpoint, png_of

from flowerbed_app.runtime import checkpoints
from flowerbed_app.task.fashion_mnist import CLASS_NAMES, DEFAULT_DIR, load_split
from flowerbed_app.task.training import to_tensor

pytestmark = pytest.mark.federation


@pytest.fixture(scope="module")
def test_images() -> tuple[np.ndarray, np.ndarray]:
    """The first 256 images of Fashion-MNIST's test split and their labels."""
    images, labels = load_split(DEFAULT_DIR, "test")
    return images[:256], labels[:256]


def _reference(checkpoint: TrainedCheckpoint, images: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return checkpoint.module(to_tensor(images)).numpy()


@pytest.mark.parametrize("which", ["trained_cnn", "stepped_resnet18"])
def test_onnx_export_gives_pytorchs_outputs_in_onnxruntime(
    which: str, backend: Backend, test_images: tuple[np.ndarray, np.ndarray], request: pytest.FixtureRequest
) -> None:
    import onnx
    import onnxruntime

    checkpoint: TrainedCheckpoint = request.getfixturevalue(which)
    with backend.client() as client:
        response = client.get(f"/models/{checkpoint.model_id}/export", params={"format": "onnx"}, timeout=300)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="{checkpoint.model_id}.onnx"'
    assert hashlib.sha256(response.content).hexdigest() == response.headers["x-checksum-sha256"]

    session = onnxruntime.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    images, _ = test_images
    (outputs,) = session.run(["log_probs"], {"image": to_tensor(images).numpy()})
    expected = _reference(checkpoint, images)
    assert outputs.shape == expected.shape == (256, 10)
    assert float(np.abs(outputs - expected).max()) <= 1e-4
    assert (outputs.argmax(1) == expected.argmax(1)).all()

    metadata = {p.key: p.value for p in onnx.load_model_from_string(response.content).metadata_props}
    assert json.loads(metadata["flowerbed.class_names"]) == list(CLASS_NAMES)
    assert metadata["flowerbed.architecture"] == checkpoint.architecture
    assert json.loads(metadata["flowerbed.preprocessing"]) == {"scale": 1 / 255, "mean": 0.286, "std": 0.353}


def test_torchscript_and_safetensors_exports(
    backend: Backend, trained_cnn: TrainedCheckpoint, test_images: tuple[np.ndarray, np.ndarray]
) -> None:
    import torch

    images, _ = test_images
    with backend.client() as client:
        scripted = client.get(f"/models/{trained_cnn.model_id}/export", params={"format": "torchscript"}, timeout=300)
        weights = client.get(f"/models/{trained_cnn.model_id}/export", params={"format": "safetensors"})
        info = client.get(f"/models/{trained_cnn.model_id}").json()
    assert scripted.status_code == 200, scripted.text
    assert scripted.headers["content-disposition"].endswith('.pt"')
    module = torch.jit.load(io.BytesIO(scripted.content))
    with torch.inference_mode():
        outputs = module(to_tensor(images)).numpy()
    assert float(np.abs(outputs - _reference(trained_cnn, images)).max()) <= 1e-5

    assert weights.status_code == 200, weights.text
    assert hashlib.sha256(weights.content).hexdigest() == info["sha256"] == weights.headers["x-checksum-sha256"]


def test_export_refuses_unknown_formats_and_models(backend: Backend, trained_cnn: TrainedCheckpoint) -> None:
    with backend.client() as client:
        response = client.get(f"/models/{trained_cnn.model_id}/export", params={"format": "pickle"})
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["loc"] == ["query", "format"]
        assert "onnx" in error["msg"] and "torchscript" in error["msg"] and "safetensors" in error["msg"]
        assert client.get("/models/no-such-run-round-0001/export").status_code == 404
        malformed = client.get("/models/not-a-model-id/export")
        assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"] == ["path", "model_id"]


def test_predictions_rank_classes_as_the_pytorch_model_does(
    backend: Backend, trained_cnn: TrainedCheckpoint, test_images: tuple[np.ndarray, np.ndarray]
) -> None:
    from PIL import Image

    images, _ = test_images
    expected = _reference(trained_cnn, images[:20])
    with backend.client() as client:
        for index in range(20):
            response = client.post(
                f"/models/{trained_cnn.model_id}/predict", content=png_of(images[index]), headers={"Content-Type": "image/png"}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model_id"] == trained_cnn.model_id and body["model"] == "cnn"
            ranked = body["predictions"]
            assert [p["class_index"] for p in ranked] == list(np.argsort(-expected[index], kind="stable"))
            assert [p["label"] for p in ranked] == [CLASS_NAMES[p["class_index"]] for p in ranked]
            assert np.allclose([p["probability"] for p in ranked], np.exp(np.sort(expected[index])[::-1]), atol=1e-5)
            assert abs(sum(p["probability"] for p in ranked) - 1) < 1e-4
        # JPEG, and colour (converted to grey), are accepted too.
        jpeg = io.BytesIO()
        Image.fromarray(images[0], mode="L").convert("RGB").save(jpeg, format="JPEG", quality=95)
        response = client.post(
            f"/models/{trained_cnn.model_id}/predict", content=jpeg.getvalue(), headers={"Content-Type": "image/jpeg"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["class_index"] == int(expected[0].argmax())


def _bad_pngs() -> dict[str, tuple[bytes, str, list[str], str]]:
    """name → (body, content type, the 422's loc, a phrase of its message)."""
    from PIL import Image

    def png(width: int, height: int, mode: str = "L") -> bytes:
        buffer = io.BytesIO()
        Image.new(mode, (width, height)).save(buffer, format="PNG")
        return buffer.getvalue()

    good = png(28, 28)
    return {
        "wrong size": (png(32, 28), "image/png", ["body"], "32×28 pixels; the model takes 28×28"),
        # 36 M black pixels compress to some 35 kB: refused from its header, before any decoding.
        "huge image in a small file": (png(6000, 6000), "image/png", ["body"], "6000×6000 pixels"),
        "not an image": (b"GIF89a not really", "image/png", ["body"], "not a readable PNG or JPEG image"),
        "truncated": (good[: len(good) // 2], "image/png", ["body"], "not a readable PNG or JPEG image"),
        "empty": (b"", "image/png", ["body"], "empty body"),
        "json": (b'{"pixels": []}', "application/json", ["header", "content-type"], "image/png or image/jpeg"),
        "a PNG said to be a JPEG": (good, "image/jpeg", ["header", "content-type"], "the body is a PNG image"),
    }


@pytest.mark.parametrize("case", list(_bad_pngs()))
def test_bad_images_get_422_naming_the_problem(case: str, backend: Backend, trained_cnn: TrainedCheckpoint) -> None:
    body, content_type, loc, phrase = _bad_pngs()[case]
    with backend.client() as client:
        response = client.post(f"/models/{trained_cnn.model_id}/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 422, (case, response.status_code, response.text)
    (error,) = response.json()["detail"]
    assert error["loc"] == loc and phrase in error["msg"], error


def test_predict_limits_the_body_before_reading_it_and_needs_the_token(backend: Backend, trained_cnn: TrainedCheckpoint) -> None:
    path = f"/models/{trained_cnn.model_id}/predict"
    with backend.client() as client:
        response = client.post(path, content=b"\x89PNG" + bytes(300 << 10), headers={"Content-Type": "image/png"})
        assert response.status_code == 413, response.text
        assert "FLOWERBED_MAX_PREDICT_BODY_BYTES" in response.json()["detail"]
        assert client.post("/models/no-such-run-round-0001/predict", content=b"x").status_code == 404
    anonymous = httpx.post(backend.base_url + path, content=b"x", headers={"Content-Type": "image/png"})
    assert anonymous.status_code == 401


def test_lineage_follows_the_checkpoints_runs_started_from(backend: Backend, trained_cnn: TrainedCheckpoint) -> None:
    """A real run from a checkpoint records it as the parent of each of its checkpoints; the chain
    stays complete (marked unavailable) when an ancestor is gone."""
    with backend.client() as client:
        run_id = start_run(client, num_rounds=1, from_checkpoint=trained_cnn.model_id, seed=3)["run_id"]
        detail = wait_for(
            lambda: (d := client.get(f"/training/{run_id}").json())["status"] in TERMINAL and d, 600, "the run to end"
        )
        assert detail["status"] == "completed", detail["error"]
        (child,) = client.get("/models", params={"run_id": run_id}).json()["items"]
        assert child["round"] == 2 and child["parent"] == trained_cnn.model_id
        chain = client.get(f"/models/{child['model_id']}/lineage").json()["chain"]
        assert [(e["model_id"], e["round"], e["available"]) for e in chain] == [
            (child["model_id"], 2, True),
            (trained_cnn.model_id, 1, True),
        ]
        assert chain[1]["model"]["metrics"]["accuracy"] == pytest.approx(trained_cnn.accuracy)

        # A grandchild whose grandparent was pruned: the chain still names it.
        store = backend.data_dir / "models"
        parent_meta = checkpoints.find_checkpoint(store, child["model_id"])
        state = checkpoints.load_state_dict(parent_meta)
        ancestors = [child["model_id"], *parent_meta["ancestors"]]
        checkpoints.save_checkpoint(
            store, "lineage-grandchild", 3, state, {"model": "cnn", "parent": ancestors[0], "ancestors": ancestors}
        )
        gone = dict(ancestors=["pruned-run-round-0007"], parent="pruned-run-round-0007", model="cnn")
        orphan = checkpoints.save_checkpoint(store, "lineage-orphan", 8, state, gone)
        chain = client.get("/models/lineage-grandchild-round-0003/lineage").json()["chain"]
        assert [e["model_id"] for e in chain] == ["lineage-grandchild-round-0003", child["model_id"], trained_cnn.model_id]
        chain = client.get(f"/models/{orphan['model_id']}/lineage").json()["chain"]
        assert [(e["model_id"], e["run_id"], e["round"], e["available"], e["model"]) for e in chain[1:]] == [
            ("pruned-run-round-0007", "pruned-run", 7, False, None)
        ]
        assert client.get("/models/no-such-run-round-0001/lineage").status_code == 404


def test_a_node_data_image_model_predicts_at_its_own_size_with_its_own_classes(backend: Backend) -> None:
    """A cnn trained on sites' colour folders (3×32×32, classes from folder names): the checkpoint's
    metadata decides the image size, the channels and the labels, not Fashion-MNIST's."""
    import torch
    from PIL import Image

    from flowerbed_app.task.networks import create_model

    torch.manual_seed(3)
    module = create_model("cnn", 2, (3, 32, 32)).eval()
    spec = {"format": "images", "classes": ["blue", "red"], "input_shape": [3, 32, 32]}
    meta = checkpoints.save_checkpoint(
        backend.data_dir / "models", "colour-cnn", 1, module.state_dict(), {"model": "cnn", "input": spec}
    )
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    with torch.inference_mode():
        expected = module(to_tensor(np.moveaxis(pixels, -1, 0)[None])).exp()[0].numpy()
    with backend.client() as client:
        response = client.post(
            f"/models/{meta['model_id']}/predict", content=buffer.getvalue(), headers={"Content-Type": "image/png"}
        )
        grey = png_of(np.zeros((28, 28), np.uint8))
        small = client.post(f"/models/{meta['model_id']}/predict", content=grey, headers={"Content-Type": "image/png"})
        info = client.get(f"/models/{meta['model_id']}").json()
    assert response.status_code == 200, response.text
    ranked = response.json()["predictions"]
    assert [p["label"] for p in ranked] == [["blue", "red"][i] for i in np.argsort(-expected, kind="stable")]
    assert np.allclose([p["probability"] for p in ranked], np.sort(expected)[::-1], atol=1e-5)
    assert small.status_code == 422 and "image is 28×28 pixels; the model takes 32×32" in small.text
    assert info["input"]["kind"] == "images" and info["input"]["shape"] == [3, 32, 32]
    assert info["input"]["classes"] == ["blue", "red"] and info["input"]["columns"] == []
