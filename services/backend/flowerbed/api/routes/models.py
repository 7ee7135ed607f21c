"""/models: checkpoints in the model store, listed, described and served after a sha256 check.

The ServerApp writes the store (and prunes it, per run's `keep_checkpoints`); the backend
reads it, never unpickles, and deletes a run's directory only with the run
(flowerbed.run_retention). Checkpoints can disappear at any moment, so a listing shows
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

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from flowerbed.api.deps import SettingsDep
from flowerbed.api.schemas import Message, ModelInfo, ModelList
from flowerbed_app import checkpoints

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
