"""A checkpoint in the formats other tools load: ONNX, TorchScript, safetensors.

Every format takes the same input and gives the same output as the model in training:
`image`, float32 [batch, 1, 28, 28] normalized as `to_tensor` does ((pixel/255 − mean)/std),
→ `log_probs`, float32 [batch, classes]. The batch dimension is dynamic. The ONNX file
carries the preprocessing constants and the class names in its metadata_props, so it can be
used without this code.

ONNX goes through torch.onnx's torch.export-based exporter (the TorchScript one is
deprecated); TorchScript through `torch.jit.trace`, which PyTorch 2.13 deprecates as well but
which is still what C++ (libtorch) deployments load. safetensors is the checkpoint itself.
Exports take seconds and a lot of memory for ResNet-18, so they run one at a time.
"""

from __future__ import annotations

import copy
import io
import json
import threading
import warnings
from typing import TYPE_CHECKING, Literal

from flowerbed.checkpoint_models import LoadedModel

if TYPE_CHECKING:
    import torch

ExportFormat = Literal["onnx", "torchscript", "safetensors"]
MEDIA_TYPES: dict[str, str] = {
    "onnx": "application/octet-stream",
    "torchscript": "application/octet-stream",
    "safetensors": "application/octet-stream",
}
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
INPUT_NAME, OUTPUT_NAME = "image", "log_probs"

_one_at_a_time = threading.Lock()


def export(loaded: LoadedModel, fmt: ExportFormat) -> bytes:
    """The model serialized in `fmt` (not safetensors: that is the checkpoint file, sent as is)."""
    with _one_at_a_time:
        if fmt == "onnx":
            return _onnx(loaded)
        if fmt == "torchscript":
            return _torchscript(loaded)
    raise ValueError(f"export: {fmt!r} is served from the checkpoint file")


def _example() -> torch.Tensor:
    import torch

    return torch.zeros(2, 1, 28, 28)


def _onnx(loaded: LoadedModel) -> bytes:
    import torch

    from flowerbed_app.fashion_mnist import CLASS_NAMES
    from flowerbed_app.training import PIXEL_MEAN, PIXEL_STD

    program = torch.onnx.export(
        copy.deepcopy(loaded.module),  # the exporter may touch the module; predictions share it
        (_example(),),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
        verbose=False,
    )
    proto = program.model_proto
    for key, value in {
        "flowerbed.model_id": loaded.model_id,
        "flowerbed.architecture": loaded.architecture,
        "flowerbed.checkpoint_sha256": loaded.sha256,
        "flowerbed.preprocessing": json.dumps({"scale": 1 / 255, "mean": PIXEL_MEAN, "std": PIXEL_STD}),
        "flowerbed.class_names": json.dumps(list(CLASS_NAMES)),
        "flowerbed.output": "log-probabilities",
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _torchscript(loaded: LoadedModel) -> bytes:
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # said once, in this module's docstring
        traced = torch.jit.trace(copy.deepcopy(loaded.module), _example())
        torch.jit.save(traced, buffer)
    return buffer.getvalue()
