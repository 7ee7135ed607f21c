"""/models: checkpoints in the model store, listed, described and served after a sha256 check.

The ServerApp writes the store; the backend only reads it, and never unpickles.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse

from flowerbed.api.deps import SettingsDep
from flowerbed.api.schemas import Message, ModelInfo, ModelList
from flowerbed_app import checkpoints

router = APIRouter(prefix="/models", tags=["models"])

RUN_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


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
    return ModelList(items=[_info(m) for m in checkpoints.list_checkpoints(settings.models_path, run_id)])


@router.get("/{model_id}", response_model=ModelInfo, responses={404: {"model": Message}})
def get_model(model_id: Annotated[str, Path(max_length=300)], settings: SettingsDep) -> ModelInfo:
    return _info(_find(settings, model_id))


@router.get(
    "/{model_id}/download",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The safetensors file."},
        404: {"model": Message},
        409: {"model": Message, "description": "The file fails its sha256."},
    },
)
def download_model(model_id: Annotated[str, Path(max_length=300)], settings: SettingsDep) -> FileResponse:
    """The weights, only if they still match the sha256 recorded when they were written."""
    meta = _find(settings, model_id)
    try:
        path = checkpoints.verify(meta)
    except checkpoints.CheckpointError as exc:
        raise HTTPException(409, str(exc)) from None
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"{meta['model_id']}.safetensors",
        headers={"X-Checksum-Sha256": meta["sha256"]},
    )
