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

from flowerbed_app import checkpoints


@dataclass(frozen=True)
class LoadedModel:
    model_id: str
    architecture: str
    sha256: str
    module: Any  # torch.nn.Module in eval mode; Any keeps torch out of this module's import


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


def _load(meta: dict[str, Any]) -> LoadedModel:
    from flowerbed_app.models import create_model  # torch: only when a model is used

    model_id = meta["model_id"]
    architecture = str(meta.get("model") or "")
    try:
        module = create_model(architecture)
    except ValueError as exc:
        raise HTTPException(409, f"checkpoint {model_id} holds a model this version cannot build: {exc}") from None
    try:
        state = checkpoints.load_state_dict(meta)
    except checkpoints.CheckpointError as exc:
        missing = "missing" in str(exc)
        raise HTTPException(404 if missing else 409, str(exc)) from None
    module.load_state_dict(state)
    module.eval()
    return LoadedModel(model_id, architecture, meta["sha256"], module)
