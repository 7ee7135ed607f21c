"""A checkpoint in the formats other tools load: ONNX, TorchScript, safetensors.

Every format takes the same input and gives the same output as the model in training:
image models `image`, float32 [batch, C, H, W] (1×28×28 for Fashion-MNIST) normalized as
`to_tensor` does ((pixel/255 − mean)/std); tabular models (mlp) `features`, float32
[batch, F] standardised with the federation's statistics ((value − mean)/std per column)
→ `log_probs`, float32 [batch, classes]. The batch dimension is dynamic. The ONNX file
carries the preprocessing (pixel constants, or the columns in order with their mean and std)
and the class names in its metadata_props, so it can be used without this code.

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

from flowerbed.model_use.loaded_checkpoints import LoadedModel

if TYPE_CHECKING:
    import torch

ExportFormat = Literal["onnx", "torchscript", "safetensors"]
MEDIA_TYPES: dict[str, str] = {
    "onnx": "application/octet-stream",
    "torchscript": "application/octet-stream",
    "safetensors": "application/octet-stream",
}
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
INPUT_NAMES = {"images": "image", "table": "features"}
OUTPUT_NAME = "log_probs"

_one_at_a_time = threading.Lock()


def export(loaded: LoadedModel, fmt: ExportFormat) -> bytes:
    """The model serialized in `fmt` (not safetensors: that is the checkpoint file, sent as is)."""
    with _one_at_a_time:
        if fmt == "onnx":
            return _onnx(loaded)
        if fmt == "torchscript":
            return _torchscript(loaded)
    raise ValueError(f"export: {fmt!r} is served from the checkpoint file")


def _example(loaded: LoadedModel) -> torch.Tensor:
    import torch

    return torch.zeros(2, *loaded.input.shape)


def _preprocessing(loaded: LoadedModel) -> dict[str, object]:
    """What turns raw input into the model's input, for users of the file without this code."""
    from flowerbed_app.task.training import PIXEL_MEAN, PIXEL_STD

    spec = loaded.input
    if spec.kind == "table":
        return {"columns": list(spec.columns), "mean": list(spec.feature_mean), "std": list(spec.feature_std)}
    return {"scale": 1 / 255, "mean": PIXEL_MEAN, "std": PIXEL_STD}


def _onnx(loaded: LoadedModel) -> bytes:
    import torch

    program = torch.onnx.export(
        copy.deepcopy(loaded.module),  # the exporter may touch the module; predictions share it
        (_example(loaded),),
        dynamo=True,
        input_names=[INPUT_NAMES[loaded.input.kind]],
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
        "flowerbed.preprocessing": json.dumps(_preprocessing(loaded)),
        "flowerbed.class_names": json.dumps(list(loaded.input.classes)),
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
        traced = torch.jit.trace(copy.deepcopy(loaded.module), _example(loaded))
        torch.jit.save(traced, buffer)
    return buffer.getvalue()
