"""Checkpoints as ready PyTorch modules, for exports and predictions.

A checkpoint's weights are verified against their sha256 and loaded (safetensors: no code
runs) into the architecture its metadata names, once per (model id, sha256); the few most
recently used stay loaded, so a prediction does not re-hash and re-read megabytes per request.
A checkpoint whose metadata no longer matches (rewritten, deleted) is looked up afresh by the
route before it gets here: the cache never answers for a file that is gone.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from flowerbed_app.runtime import checkpoints


@dataclass(frozen=True)
class ModelInput:
    """What a checkpoint's model takes, from its metadata's `input` (written by the ServerApp).

    Checkpoints without it (written before node-local data) are Fashion-MNIST models:
    10 classes, 1×28×28 grey images."""

    kind: str  # "images" or "table": flowerbed_app.run_settings.MODEL_INPUT of the architecture
    classes: tuple[str, ...]
    shape: tuple[int, ...]
    columns: tuple[str, ...] = ()
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()


@dataclass(frozen=True)
class LoadedModel:
    model_id: str
    architecture: str
    sha256: str
    module: Any  # torch.nn.Module in eval mode; Any keeps torch out of this module's import
    input: ModelInput

    def classify(self, x: Any) -> list[dict[str, Any]]:
        """Every class of one example (a batch of one: uint8 image or standardised float row), most probable first."""
        import torch

        from flowerbed_app.task.training import to_tensor

        with torch.inference_mode():
            probabilities = self.module(to_tensor(x)).exp()[0].tolist()
        names = self.input.classes
        ranked = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])
        return [
            {"class_index": i, "label": names[i] if i < len(names) else str(i), "probability": probabilities[i]} for i in ranked
        ]


class ModelCache:
    """Loaded checkpoints, least recently used dropped first."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._loaded: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, meta: dict[str, Any]) -> LoadedModel:
        """The checkpoint of `meta` as a module; 404 if its file is gone, 409 if it fails its sha256."""
        key = (meta["model_id"], meta["sha256"])
        with self._lock:
            if (hit := self._loaded.get(key)) is not None:
                self._loaded.move_to_end(key)
                return hit
        loaded = _load(meta)
        with self._lock:
            self._loaded[key] = loaded
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
        return loaded


def model_input(meta: dict[str, Any]) -> ModelInput:
    """The input spec of a checkpoint's metadata; ValueError when it is incomplete."""
    from flowerbed_app.run_choices import MODEL_INPUT
    from flowerbed_app.task.fashion_mnist import CLASS_NAMES, SHAPE

    architecture = str(meta.get("model") or "")
    if architecture not in MODEL_INPUT:
        raise ValueError(f"unknown model {architecture!r}; valid: {', '.join(MODEL_INPUT)}")
    spec = meta.get("input") if isinstance(meta.get("input"), dict) else {}
    classes = tuple(str(c) for c in spec.get("classes") or CLASS_NAMES)
    shape = tuple(int(d) for d in spec.get("input_shape") or SHAPE)
    if MODEL_INPUT[architecture] == "images":
        return ModelInput("images", classes, shape)
    columns = tuple(str(c) for c in spec.get("feature_columns") or ())
    mean = tuple(float(v) for v in spec.get("feature_mean") or ())
    std = tuple(float(v) for v in spec.get("feature_std") or ())
    if not columns or not len(columns) == len(mean) == len(std) == shape[0]:
        raise ValueError("its metadata lacks the feature columns and the federation's statistics they were standardised with")
    return ModelInput("table", classes, shape, columns, mean, std)


def _load(meta: dict[str, Any]) -> LoadedModel:
    from flowerbed_app.task.networks import create_model  # torch: only when a model is used

    model_id = meta["model_id"]
    architecture = str(meta.get("model") or "")
    try:
        spec = model_input(meta)
        module = create_model(architecture, len(spec.classes), spec.shape)
    except ValueError as exc:
        raise HTTPException(409, f"checkpoint {model_id} holds a model this version cannot build: {exc}") from None
    try:
        state = checkpoints.load_state_dict(meta)
    except checkpoints.CheckpointError as exc:
        missing = "missing" in str(exc)
        raise HTTPException(404 if missing else 409, str(exc)) from None
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:  # weights of another shape than the metadata says
        raise HTTPException(409, f"checkpoint {model_id}'s weights do not fit its metadata: {str(exc)[:300]}") from None
    module.eval()
    return LoadedModel(model_id, architecture, meta["sha256"], module, spec)
