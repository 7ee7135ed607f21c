"""Exceptions of the services mapped to HTTP answers: one shape (`{"detail": …}`), never a 500.

The 422 shape is FastAPI's own (a list of `{loc, msg, type, input}`), also for the domain
rules checked after validation, so clients handle one format.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from flowerbed.runs.run_config import FieldError
from flowerbed.runs.run_resume import NotResumable
from flowerbed.runs.run_retention import RunActive, StoreNotWritable
from flowerbed.runs.run_service import RunAlreadyFinished, RunNotFound, SuperLinkUnavailable, TooManyActiveRuns

STATUS_OF: dict[type[Exception], int] = {
    RunNotFound: 404,
    RunAlreadyFinished: 409,
    RunActive: 409,
    NotResumable: 409,
    TooManyActiveRuns: 409,
    StoreNotWritable: 409,
    SuperLinkUnavailable: 503,
}


def install_error_handlers(app: FastAPI) -> None:
    async def as_detail(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=STATUS_OF[type(exc)])

    for kind in STATUS_OF:
        app.add_exception_handler(kind, as_detail)

    @app.exception_handler(FieldError)
    async def field_error(request: Request, exc: FieldError) -> JSONResponse:
        detail = [{"type": "value_error", "loc": ["body", exc.field], "msg": exc.reason, "input": json_safe(exc.value)}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own shape; but inputs like NaN (Python's json accepts it) must not break the encoder.
        return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, status_code=422)


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
