"""The FastAPI application: wiring of settings, database, followers, limits and routers.

`create_app` builds everything from one `Settings`, so tests and `flowerbed serve`
get the same app. It refuses insecure secrets before anything else. Startup migrates
the database, prunes rows of deleted runs and re-attaches a follower to every unfinished
run; that is how a restarted backend catches up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from flowerbed.api.auth import authorize
from flowerbed.api.errors import install_error_handlers
from flowerbed.api.limits import BodySizeLimit, StreamSlots
from flowerbed.api.routes import auth, checkpoints, health, nodes, traces, training
from flowerbed.api.schemas import AUTH_ERRORS
from flowerbed.api.sessions import LoginCodes, SessionSigner
from flowerbed.db.engine import make_engine, migrate, session_factory
from flowerbed.db.run_history import RunHistory
from flowerbed.flower_control import FlowerControl
from flowerbed.model_use.loaded_checkpoints import ModelCache
from flowerbed.runs.event_bus import EventBus
from flowerbed.runs.mlflow_tracking import MlflowTracking
from flowerbed.runs.run_detail_cache import RunDetailCache
from flowerbed.runs.run_retention import RunRetention
from flowerbed.runs.run_service import RunService
from flowerbed.runs.run_tracker import RunTracker
from flowerbed.runs.training_metrics import exposition
from flowerbed.settings import Settings
from flowerbed.traces.trace_store import TraceStore
from flowerbed_app.runtime import telemetry

log = logging.getLogger("flowerbed.api")
TITLE = "Flowerbed API"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.refuse_insecure_secrets()

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

        tracker = RunTracker(history, bus, control_factory, settings.superlink_lost_seconds, settings.superlink_url)
        app.state.engine = engine
        app.state.history = history
        app.state.traces = TraceStore(session_factory(engine), settings.trace_retention_spans)
        app.state.bus = bus
        app.state.detail_cache = RunDetailCache()
        app.state.control_factory = control_factory
        app.state.tracker = tracker
        app.state.service = RunService(
            history, tracker, control_factory, settings.app_dir, settings.models_path, settings.max_active_runs
        )
        app.state.retention = RunRetention(session_factory(engine), history, settings.models_path)
        if pruned := await asyncio.to_thread(app.state.retention.prune_orphans):
            log.info("pruned %d event, round and log rows of deleted runs", pruned)
        mlflow_export = _mlflow_export(settings, history, bus)
        if mlflow_export is not None:
            tracker.listeners.append(mlflow_export.notify)
        resumed = tracker.attach_unfinished()
        if resumed:
            log.info("following %d unfinished run(s) again: %s", len(resumed), ", ".join(resumed))
        yield
        tracker.shutdown()
        if mlflow_export is not None:
            mlflow_export.stop()
        engine.dispose()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()

    app = FastAPI(
        title=TITLE,
        version="0.1.0",
        description="Start, follow, stop, resume and delete federated training runs on Flower; browse and download "
        "checkpoints, export them (ONNX, TorchScript) and predict with them. Authenticate with "
        "`Authorization: Bearer <token>`, or in a browser with the session POST /auth/session opens.",
        lifespan=lifespan,
        docs_url=None,  # served below, behind `authorize` (reads may need the token)
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.sessions = SessionSigner(settings.api_token, settings.session_ttl_seconds)
    app.state.login_codes = LoginCodes(settings.login_code_ttl_seconds)
    app.state.stream_slots = StreamSlots(settings.max_sse_streams)
    app.state.model_cache = ModelCache()
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
    app.include_router(auth.router)
    for router in (training.router, nodes.router, checkpoints.router, traces.router):
        app.include_router(router, dependencies=protected, responses=AUTH_ERRORS)
    _add_protected_extras(app)
    _instrument(app)
    install_error_handlers(app)
    _serve_dashboard(app, settings.web_dir)
    app.add_middleware(BodySizeLimit, limit_for=_body_limits(settings))  # added last: runs first
    return app


def _mlflow_export(settings: Settings, history: RunHistory, bus: EventBus) -> MlflowTracking | None:
    """The MLflow mirror of every run, started when FLOWERBED_MLFLOW_TRACKING_URI is set."""
    if not settings.mlflow_tracking_uri:
        return None
    export = MlflowTracking(
        history,
        settings.models_path,
        settings.mlflow_tracking_uri,
        settings.mlflow_experiment,
        settings.mlflow_registered_model,
        settings.mlflow_retry_seconds,
        on_events=lambda run_id, _events: bus.publish(run_id),
    )
    export.start()
    log.info("mirroring runs into MLflow experiment %r", settings.mlflow_experiment)
    return export


def _body_limits(settings: Settings) -> Any:
    def limit_for(path: str) -> tuple[int, str]:
        if path == traces.EXPORT_PATH:
            return settings.max_otlp_body_bytes, "FLOWERBED_MAX_OTLP_BODY_BYTES"
        if checkpoints.is_predict_path(path):
            return settings.max_predict_body_bytes, "FLOWERBED_MAX_PREDICT_BODY_BYTES"
        return settings.max_body_bytes, "FLOWERBED_MAX_BODY_BYTES"

    return limit_for


def _add_protected_extras(app: FastAPI) -> None:
    """/metrics and the API docs: reads like any other (open, or behind the token when reads need it)."""

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(authorize)])
    def metrics() -> Response:
        """Prometheus exposition of the training series (deploy/prometheus scrapes it)."""
        return Response(exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorize)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(authorize)])
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{TITLE} — docs")

    @app.get("/redoc", include_in_schema=False, dependencies=[Depends(authorize)])
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{TITLE} — ReDoc")


def _serve_metrics(port: int | None) -> WSGIServer | None:
    """The exposition on a port of its own, for an in-network scraper: compose never publishes it.

    Served with prometheus-client's own WSGI app and server (a thread), so it answers even while
    the API's event loop is busy; the public port's /metrics stays as it is."""
    if port is None:
        return None
    from prometheus_client import start_http_server

    from flowerbed.runs.training_metrics import REGISTRY

    server, _thread = start_http_server(port, addr="0.0.0.0", registry=REGISTRY)
    log.info("Prometheus exposition on :%d/metrics", port)
    return server


def _instrument(app: FastAPI) -> None:
    """Request spans (and the httpx calls to the SuperLink) when OTEL_* enables tracing.

    /v1/traces is excluded: in local mode the backend exports to itself, and tracing
    its own span exports would feed back forever. Query strings are redacted from the
    spans' URL attributes (flowerbed.url_redaction).
    """
    if not telemetry.enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    from flowerbed.url_redaction import client_request_hook, server_request_hook

    telemetry.setup("flowerbed-backend")
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="v1/traces,health,ready,metrics", server_request_hook=server_request_hook
    )
    HTTPXClientInstrumentor().instrument(request_hook=client_request_hook)


def _serve_dashboard(app: FastAPI, web_dir: Path) -> None:
    """Serve the built dashboard at / (SPA: unknown paths get index.html), if it was built.

    The files are public even when reads need the token: the page is how one signs in.
    """
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
