"""Dependencies as `Annotated` aliases, so route signatures say what they use.

They are `async def` although they never await: FastAPI runs a plain `def` dependency
in its thread pool, one hop per dependency per request, for what is an attribute
lookup. None of them blocks.

Authentication lives in `flowerbed.api.auth`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from flowerbed.db.run_history import RunHistory
from flowerbed.flower_control import FlowerControl
from flowerbed.model_use.loaded_checkpoints import ModelCache
from flowerbed.runs.event_bus import EventBus
from flowerbed.runs.run_detail_cache import RunDetailCache
from flowerbed.runs.run_service import RunService
from flowerbed.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_history(request: Request) -> RunHistory:
    return request.app.state.history


async def get_service(request: Request) -> RunService:
    return request.app.state.service


async def get_bus(request: Request) -> EventBus:
    return request.app.state.bus


async def get_detail_cache(request: Request) -> RunDetailCache:
    return request.app.state.detail_cache


async def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


async def get_control(request: Request) -> FlowerControl:
    return request.app.state.control_factory()


SettingsDep = Annotated[Settings, Depends(get_settings)]
HistoryDep = Annotated[RunHistory, Depends(get_history)]
ServiceDep = Annotated[RunService, Depends(get_service)]
BusDep = Annotated[EventBus, Depends(get_bus)]
DetailCacheDep = Annotated[RunDetailCache, Depends(get_detail_cache)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
ControlDep = Annotated[FlowerControl, Depends(get_control)]
