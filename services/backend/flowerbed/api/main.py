"""The FastAPI application: wiring of settings, database, followers and routers.

`create_app` builds everything from one `Settings`, so tests and `flowerbed serve`
get the same app. Startup migrates the database and re-attaches a follower to every
unfinished run; that is how a restarted backend catches up.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response

from flowerbed.api.deps import authorize
from flowerbed.api.routes import health, models, nodes, traces, training
from flowerbed.db.engine import make_engine, migrate, session_factory
from flowerbed.db.run_history import RunHistory
from flowerbed.event_bus import EventBus
from flowerbed.flower_control import FlowerControl
from flowerbed.run_config import FieldError
from flowerbed.run_detail_cache import RunDetailCache
from flowerbed.run_service import RunAlreadyFinished, RunNotFound, RunService, SuperLinkUnavailable
from flowerbed.run_tracker import RunTracker
from flowerbed.settings import Settings
from flowerbed.trace_store import TraceStore
from flowerbed.training_metrics import exposition
from flowerbed_app import telemetry

log = logging.getLogger("flowerbed.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        await asyncio.to_thread(migrate, engine)
        history = RunHistory(session_factory(engine))
        bus = EventBus()
        bus.bind(asyncio.get_running_loop())

        def control_factory() -> FlowerControl:
            return FlowerControl(settings.superlink_url, ca_cert=settings.superlink_ca_cert)

        metrics_server = _serve_metrics(settings.metrics_port)

        tracker = RunTracker(history, bus, control_factory)
        app.state.engine = engine
        app.state.history = history
        app.state.traces = TraceStore(session_factory(engine), settings.trace_retention_spans)
        app.state.bus = bus
        app.state.detail_cache = RunDetailCache()
        app.state.control_factory = control_factory
        app.state.tracker = tracker
        app.state.service = RunService(history, tracker, control_factory, settings.app_dir, settings.models_path)
        resumed = tracker.attach_unfinished()
        if resumed:
            log.info("following %d unfinished run(s) again: %s", len(resumed), ", ".join(resumed))
        yield
        tracker.shutdown()
        engine.dispose()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()

    app = FastAPI(
        title="Flowerbed API",
        version="0.1.0",
        description="Start, follow and stop federated training runs on Flower; browse and download checkpoints.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Checksum-Sha256"],
        )
    protected = [Depends(authorize)]
    app.include_router(health.router)
    for router in (training.router, nodes.router, models.router, traces.router):
        app.include_router(router, dependencies=protected)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus exposition of the training series (deploy/prometheus scrapes it)."""
        return Response(exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    _instrument(app)
    _install_error_handlers(app)
    _serve_dashboard(app, settings.web_dir)
    return app


def _serve_metrics(port: int | None) -> WSGIServer | None:
    """The exposition on a port of its own, for an in-network scraper: compose never publishes it.

    Served with prometheus-client's own WSGI app and server (a thread), so it answers even while
    the API's event loop is busy; the public port's /metrics stays as it is."""
    if port is None:
        return None
    from prometheus_client import start_http_server

    from flowerbed.training_metrics import REGISTRY

    server, _thread = start_http_server(port, addr="0.0.0.0", registry=REGISTRY)
    log.info("Prometheus exposition on :%d/metrics", port)
    return server


def _instrument(app: FastAPI) -> None:
    """Request spans (and the httpx calls to the SuperLink) when OTEL_* enables tracing.

    /v1/traces is excluded: in local mode the backend exports to itself, and tracing
    its own span exports would feed back forever.
    """
    if not telemetry.enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    telemetry.setup("flowerbed-backend")
    FastAPIInstrumentor.instrument_app(app, excluded_urls="v1/traces,health,ready,metrics")
    HTTPXClientInstrumentor().instrument()


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FieldError)
    async def field_error(request: Request, exc: FieldError) -> JSONResponse:
        # Same shape as FastAPI's own 422, so clients handle one format.
        detail = [{"type": "value_error", "loc": ["body", exc.field], "msg": exc.reason, "input": _json_safe(exc.value)}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(RunNotFound)
    async def not_found(request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(RunAlreadyFinished)
    async def conflict(request: Request, exc: RunAlreadyFinished) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(SuperLinkUnavailable)
    async def unavailable(request: Request, exc: SuperLinkUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own shape; but inputs like NaN (Python's json accepts it) must not break the encoder.
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _serve_dashboard(app: FastAPI, web_dir: Path) -> None:
    """Serve the built dashboard at / (SPA: unknown paths get index.html), if it was built."""
    index = web_dir / "index.html"
    if not index.is_file():
        return
    root = web_dir.resolve()

    @app.get("/{path:path}", include_in_schema=False)
    async def dashboard(path: str) -> FileResponse:
        candidate = (root / path).resolve()
        if path and candidate.is_file() and candidate.is_relative_to(root):
            return FileResponse(candidate)
        return FileResponse(index)
