"""/health (the process is up) and /ready (it can do its job: database and SuperLink answer)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from flowerbed.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health()


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    detail: dict[str, str] = {}

    def database() -> None:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def superlink() -> None:
        state.control_factory().list_nodes()

    results = {}
    for name, check in (("database", database), ("superlink", superlink)):
        try:
            await asyncio.wait_for(run_in_threadpool(check), timeout=5.0)
            results[name] = True
        except Exception as exc:
            results[name] = False
            detail[name] = str(exc) or type(exc).__name__
    body = Readiness(database=results["database"], superlink=results["superlink"], detail=detail).model_dump()
    if not detail:
        del body["detail"]
    return JSONResponse(body, status_code=200 if all(results.values()) else 503)
