"""/models: checkpoints in the model store, listed, described and served after a sha256 check;
exported (flowerbed.model_use.model_export), asked for predictions (an image: flowerbed.model_use.image_predict;
a table row: flowerbed.model_use.row_predict), and
traced back through the checkpoints their runs started from (lineage).

The ServerApp writes the store (and prunes it, per run's `keep_checkpoints`); the backend
reads it, never unpickles, and deletes a run's directory only with the run
(flowerbed.runs.run_retention). Checkpoints can disappear at any moment, so a listing shows
only those whose weights exist, and a download hashes and sends one open file: a
checkpoint removed meanwhile is a 404, never a 500 or a file that fails its checksum.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse

from flowerbed.api.deps import ModelCacheDep, SettingsDep
from flowerbed.api.schemas import (
    LineageEntry,
    Message,
    ModelInfo,
    ModelInputInfo,
    ModelLineage,
    ModelList,
    Prediction,
    PredictionResult,
)
from flowerbed.model_use import image_predict, model_export, prediction_input, row_predict
from flowerbed.model_use.loaded_checkpoints import model_input
from flowerbed_app.runtime import checkpoints

router = APIRouter(prefix="/models", tags=["models"])

RUN_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
CHUNK = 1 << 20


def _info(meta: dict[str, Any]) -> ModelInfo:
    created = meta.get("created_at")
    return ModelInfo(
        model_id=meta["model_id"],
        run_id=str(meta.get("run_id") or meta.get("run_key")),
        round=int(meta["round"]),
        model=meta.get("model"),
        metrics=meta.get("metrics") or {},
        sha256=meta["sha256"],
        size=int(meta["size"]),
        created_at=datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else None,
        parent=meta.get("parent"),
        input=_input_info(meta),
    )


def _input_info(meta: dict[str, Any]) -> ModelInputInfo | None:
    """What the model takes, for clients that build an input (the dashboard's row form)."""
    try:
        spec = model_input(meta)
    except ValueError:
        return None  # an unknown model or incomplete metadata: predict and export say why
    return ModelInputInfo(
        kind=spec.kind,
        classes=list(spec.classes),
        shape=list(spec.shape),
        columns=list(spec.columns),
        feature_mean=list(spec.feature_mean),
    )


def _find(settings: SettingsDep, model_id: str) -> dict[str, Any]:
    try:
        checkpoints.split_model_id(model_id)
    except checkpoints.CheckpointError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("path", "model_id"), "msg": str(exc), "input": model_id}]
        ) from None
    try:
        return checkpoints.find_checkpoint(settings.models_path, model_id)
    except checkpoints.CheckpointError:
        raise HTTPException(404, f"model {model_id} not found") from None


@router.get("", response_model=ModelList)
def list_models(
    settings: SettingsDep, run_id: Annotated[str | None, Query(pattern=RUN_KEY, description="Only this run's.")] = None
) -> ModelList:
    """Every complete checkpoint, by run then round."""
    found = checkpoints.list_checkpoints(settings.models_path, run_id)
    return ModelList(items=[_info(m) for m in found if FilePath(m["path"]).is_file()])


@router.get("/{model_id}", response_model=ModelInfo, responses={404: {"model": Message}})
def get_model(model_id: Annotated[str, Path(max_length=300)], settings: SettingsDep) -> ModelInfo:
    return _info(_find(settings, model_id))


@router.get(
    "/{model_id}/download",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The safetensors file."},
        404: {"model": Message},
        409: {"model": Message, "description": "The file fails its sha256."},
    },
)
async def download_model(model_id: Annotated[str, Path(max_length=300)], settings: SettingsDep) -> StreamingResponse:
    """The weights, only if they still match the sha256 recorded when they were written.

    Authenticate with the Authorization header or the dashboard's session cookie.
    """
    meta = await run_in_threadpool(_find, settings, model_id)
    return await _send_checkpoint_file(meta)


async def _send_checkpoint_file(meta: dict[str, Any]) -> StreamingResponse:
    handle = await run_in_threadpool(_open_verified, meta)
    return StreamingResponse(
        _read(handle),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{meta["model_id"]}.safetensors"',
            "Content-Length": str(os.fstat(handle.fileno()).st_size),
            "X-Checksum-Sha256": meta["sha256"],
        },
    )


@router.get(
    "/{model_id}/export",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The model in the asked format."},
        404: {"model": Message},
        409: {"model": Message, "description": "The checkpoint fails its sha256, or holds an unknown model."},
    },
)
async def export_model(
    model_id: Annotated[str, Path(max_length=300)],
    settings: SettingsDep,
    cache: ModelCacheDep,
    format: Annotated[
        model_export.ExportFormat,
        Query(
            description="onnx (input `image` [batch,C,H,W] normalized, or `features` [batch,F] standardised for mlp; "
            "output `log_probs`), torchscript, safetensors."
        ),
    ] = "onnx",
) -> Response:
    """The checkpoint as a file other tools load; authenticated like downloads.

    ONNX and TorchScript are made from the verified weights on each request (seconds; one
    export at a time); safetensors is the checkpoint file itself, as /download sends it.
    """
    meta = await run_in_threadpool(_find, settings, model_id)
    if format == "safetensors":
        return await _send_checkpoint_file(meta)
    loaded = await run_in_threadpool(cache.get, meta)
    data = await run_in_threadpool(model_export.export, loaded, format)
    return Response(
        data,
        media_type=model_export.MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="{meta["model_id"]}{model_export.SUFFIXES[format]}"',
            "X-Checksum-Sha256": hashlib.sha256(data).hexdigest(),
            "X-Checkpoint-Sha256": meta["sha256"],
        },
    )


def is_predict_path(path: str) -> bool:
    """Whether the body limit of predictions applies (flowerbed.api.main's body limits)."""
    return path.startswith(router.prefix + "/") and path.endswith("/predict")


# Two columns of the demo breast-cancer table; a real row gives every column its model lists.
ROW_EXAMPLE = {"features": {"mean radius": 17.99, "mean texture": 10.38}}


@router.post(
    "/{model_id}/predict",
    response_model=PredictionResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": (
                "Image models (cnn, resnet18): the image file itself (not a form), PNG or JPEG at the model's size "
                "(28×28 for Fashion-MNIST), grey or colour. Tabular models (mlp): one row as JSON, "
                '`{"features": {"<column>": <number>, ...}}` with every column the model was trained on '
                "(GET /models/{model_id} lists them under input.columns) and no other; raw values — the "
                "server standardises them with the federation's statistics, as in training."
            ),
            "content": {
                **{
                    media_type: {"schema": {"type": "string", "format": "binary"}}
                    for media_type in sorted(image_predict.MEDIA_TYPES)
                },
                row_predict.MEDIA_TYPE: {
                    "schema": {
                        "type": "object",
                        "required": [row_predict.FIELD],
                        "additionalProperties": False,
                        "properties": {
                            row_predict.FIELD: {"type": "object", "additionalProperties": {"type": "number"}},
                        },
                    },
                    "example": ROW_EXAMPLE,
                },
            },
        }
    },
    responses={
        404: {"model": Message},
        409: {"model": Message, "description": "The checkpoint fails its sha256, or holds an unknown model."},
        413: {"model": Message, "description": "The body is over FLOWERBED_MAX_PREDICT_BODY_BYTES."},
    },
)
async def predict(
    model_id: Annotated[str, Path(max_length=300)], request: Request, settings: SettingsDep, cache: ModelCacheDep
) -> PredictionResult:
    """Class probabilities of one image (image models) or one table row (tabular models)."""
    meta = await run_in_threadpool(_find, settings, model_id)
    body = await request.body()  # already bounded: the body limit runs before this route
    loaded = await run_in_threadpool(cache.get, meta)
    x = prediction_input.decode(loaded, body, request.headers.get("content-type", ""))
    ranked = await run_in_threadpool(loaded.classify, x)
    return PredictionResult(model_id=loaded.model_id, model=loaded.architecture, predictions=[Prediction(**p) for p in ranked])


@router.get("/{model_id}/lineage", response_model=ModelLineage, responses={404: {"model": Message}})
def lineage(model_id: Annotated[str, Path(max_length=300)], settings: SettingsDep) -> ModelLineage:
    """The checkpoint, the one its run started from, that one's, … (oldest last).

    Each checkpoint records its whole ancestry when written, so the chain is complete even
    when an ancestor has been pruned or its run deleted (those show `available: false`)."""
    meta = _find(settings, model_id)
    chain = [
        LineageEntry(
            model_id=meta["model_id"], run_id=_info(meta).run_id, round=int(meta["round"]), available=True, model=_info(meta)
        )
    ]
    for ancestor in meta.get("ancestors") or []:
        try:
            run_key, server_round = checkpoints.split_model_id(str(ancestor))
        except checkpoints.CheckpointError:
            break  # not written by us: the chain ends where it stops making sense
        try:
            found = checkpoints.find_checkpoint(settings.models_path, str(ancestor))
        except checkpoints.CheckpointError:
            found = None
        available = found is not None and FilePath(found["path"]).is_file()
        chain.append(
            LineageEntry(
                model_id=str(ancestor),
                run_id=run_key,
                round=server_round,
                available=available,
                model=_info(found) if available and found is not None else None,
            )
        )
    return ModelLineage(model_id=meta["model_id"], chain=chain)


def _open_verified(meta: dict[str, Any]) -> BinaryIO:
    """The weights file, open, after its sha256 matched: what is sent is what was hashed."""
    try:
        handle = open(meta["path"], "rb")  # noqa: SIM115 — closed by _read or below
    except FileNotFoundError:
        raise HTTPException(404, f"model {meta['model_id']} was deleted") from None
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(CHUNK), b""):
        digest.update(block)
    if digest.hexdigest() != meta.get("sha256"):
        handle.close()
        raise HTTPException(409, f"checkpoint {meta['model_id']} fails its sha256 (file changed or corrupt)")
    handle.seek(0)
    return handle


def _read(handle: BinaryIO) -> Iterator[bytes]:
    try:
        yield from iter(lambda: handle.read(CHUNK), b"")
    finally:
        handle.close()
