"""Dependencies as `Annotated` aliases, so route signatures say what they use.

They are `async def` although they never await: FastAPI runs a plain `def` dependency
in its thread pool, one hop per dependency per request, for what is an attribute
lookup. None of them blocks.

Also the bearer-token check: routers that expose the API include `authorize`, which
lets reads through (unless `require_token_for_reads`) and guards every mutating
method, so a new POST route is protected without anyone remembering to.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flowerbed.db.run_history import RunHistory
from flowerbed.event_bus import EventBus
from flowerbed.flower_control import FlowerControl
from flowerbed.run_detail_cache import RunDetailCache
from flowerbed.run_service import RunService
from flowerbed.settings import Settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

_bearer = HTTPBearer(auto_error=False, description="The API token (local mode: <data_dir>/api-token).")


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


async def get_control(request: Request) -> FlowerControl:
    return request.app.state.control_factory()


SettingsDep = Annotated[Settings, Depends(get_settings)]
HistoryDep = Annotated[RunHistory, Depends(get_history)]
ServiceDep = Annotated[RunService, Depends(get_service)]
BusDep = Annotated[EventBus, Depends(get_bus)]
DetailCacheDep = Annotated[RunDetailCache, Depends(get_detail_cache)]
ControlDep = Annotated[FlowerControl, Depends(get_control)]


def unauthorized(settings: Settings) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail=(
            "missing or invalid bearer token — pass 'Authorization: Bearer <token>' "
            f"(local mode prints it; see {settings.data_dir / 'api-token'})"
        ),
        headers={"WWW-Authenticate": "Bearer"},
    )


async def authorize(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if request.method in SAFE_METHODS and not settings.require_token_for_reads:
        return
    token = credentials.credentials if credentials else ""
    if not token and request.method == "GET" and request.url.path.endswith("/events"):
        token = request.query_params.get("token", "")  # EventSource cannot send headers
    if not token or not secrets.compare_digest(token.encode(), settings.api_token.encode()):
        raise unauthorized(settings)


Authorized = Depends(authorize)
