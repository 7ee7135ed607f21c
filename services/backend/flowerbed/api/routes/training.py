"""/training: start, list, inspect, follow (SSE), stop, resume and delete runs; read their logs."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from flowerbed.api.deps import BusDep, DetailCacheDep, HistoryDep, ServiceDep, SettingsDep
from flowerbed.api.limits import SlotStreamingResponse, StreamSlots
from flowerbed.api.schemas import (
    BODY_ERRORS,
    DeletedRun,
    Message,
    MlflowExport,
    RoundDetail,
    RunDetail,
    RunLogs,
    RunPage,
    RunSummary,
    StartedRun,
    StoppingRun,
    node_data_of,
)
from flowerbed.db.run_history import STATUS_EVENT, RunHistory
from flowerbed.db.run_queries import StoredEvent, as_utc
from flowerbed.db.tables import TERMINAL_STATUSES, Run
from flowerbed.runs import mlflow_tracking
from flowerbed.runs.run_config import PRESETS, Preset, TrainingConfig, training_schema
from flowerbed.runs.run_service import RunNotFound
from flowerbed.runs.run_status import RunStatus
from flowerbed.settings import Settings
from flowerbed.traces.trace_links import trace_url
from flowerbed_app.runtime.progress_events import to_json

router = APIRouter(prefix="/training", tags=["training"])

KEEPALIVE_SECONDS = 15.0
LOG_PAGE_MAX = 10_000
NOT_FOUND = {404: {"model": Message, "description": "No run with this id."}}
TOO_MANY_RUNS = {409: {"model": Message, "description": "The cap on active runs (FLOWERBED_MAX_ACTIVE_RUNS) is reached."}}


def _started(run: Run) -> StartedRun:
    return StartedRun(
        run_id=run.run_id,
        status="pending",
        flower_run_id=run.flower_run_id,
        created_at=as_utc(run.created_at),  # type: ignore[arg-type]
        config=run.config,
        resumed_from=run.resumed_from,
    )


@router.post(
    "/start", status_code=202, response_model=StartedRun, responses={**TOO_MANY_RUNS, **BODY_ERRORS, 503: {"model": Message}}
)
def start_training(config: TrainingConfig, service: ServiceDep) -> StartedRun:
    """Validate, record and submit a run; progress then arrives on /training/{run_id}/events."""
    return _started(service.start(config))


@router.post(
    "/{run_id}/resume",
    status_code=202,
    response_model=StartedRun,
    responses={
        **NOT_FOUND,
        409: {"model": Message, "description": "Not failed or stopped, already resumed, nothing left, or the run cap."},
        503: {"model": Message},
    },
)
def resume_run(run_id: str, service: ServiceDep) -> StartedRun:
    """Continue a failed or stopped run from its newest checkpoint up to its last round.

    A new run (its `resumed_from` names this one) trains the rounds left; this run keeps
    its status and error.
    """
    return _started(service.resume(run_id))


@router.get("/schema")
def get_training_schema() -> dict[str, Any]:
    """JSON schema of TrainingConfig to build forms from: defaults, enums, bounds, and per property
    `x-label` (its label), `x-group` (its form section; `x-groups` lists them in order with a hint),
    `x-advanced` (folded away by default) and `x-when` (`{"<field>": [values…]}`: the property matters
    only when every listed field has one of those values)."""
    return training_schema()


@router.get("/presets", response_model=list[Preset])
def training_presets() -> list[Preset]:
    """Named partial configurations (over the defaults) the Start form offers."""
    return list(PRESETS)


@router.get("", response_model=RunPage)
def list_runs(
    history: HistoryDep,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> RunPage:
    """Runs, newest first."""
    runs, total, counts = history.list_runs(status, limit, offset)
    return RunPage(items=[RunSummary.of(r, counts.get(r.run_id, 0)) for r in runs], total=total, limit=limit, offset=offset)


async def get_stream_slots(request: Request) -> StreamSlots:
    return request.app.state.stream_slots


def _get_run(history: RunHistory, run_id: str) -> Run:
    run = history.get_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


@router.get(
    "/{run_id}",
    response_model=RunDetail,
    responses={**NOT_FOUND, 304: {"description": "Unchanged since the ETag sent in If-None-Match."}},
)
async def get_run(
    run_id: str,
    history: HistoryDep,
    settings: SettingsDep,
    cache: DetailCacheDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Status, config and every round (per-client results, failures).

    Sends an ETag that changes with the run: pollers may send it back in If-None-Match
    and get 304 while nothing changed. Async on purpose: an unchanged run is served from
    the cache without a thread-pool hop or a query.
    """
    revision = history.revision(run_id)
    body = cache.get(run_id, revision)
    if body is None:
        detail = await run_in_threadpool(_run_detail, history, run_id, settings)
        body = detail.model_dump_json().encode()
        cache.put(run_id, revision, body)
    etag = f'"{history.instance}.{revision}"'
    if if_none_match and etag in (tag.strip() for tag in if_none_match.split(",")):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})


def _run_detail(history: RunHistory, run_id: str, settings: Settings) -> RunDetail:
    run = _get_run(history, run_id)
    rounds = history.rounds(run_id)
    summary = RunSummary.of(run, len(rounds))
    return RunDetail(
        **summary.model_dump(),
        rounds=[RoundDetail.of(r) for r in rounds],
        bytes_sent=run.bytes_sent,
        bytes_received=run.bytes_received,
        trace_id=run.trace_id,
        trace_url=trace_url(run.trace_id, settings.grafana_url),
        node_data=node_data_of(history.event_of_type(run_id, "data_described")),
        mlflow=_mlflow_export(history, run_id) if settings.mlflow_tracking_uri else None,
    )


def _mlflow_export(history: RunHistory, run_id: str) -> MlflowExport:
    synced = history.event_of_type(run_id, mlflow_tracking.SYNCED) or {}
    latest = history.latest_event(run_id, mlflow_tracking.OWN_EVENTS)
    warning = latest.data.get("warning") if latest is not None and latest.type == mlflow_tracking.WARNING else None
    return MlflowExport(
        mlflow_run_id=synced.get("mlflow_run_id"), exported_seq=int(synced.get("exported_seq") or 0), warning=warning
    )


@router.get(
    "/{run_id}/events",
    responses={
        **NOT_FOUND,
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."},
        429: {"model": Message, "description": "Too many event streams open (FLOWERBED_MAX_SSE_STREAMS)."},
    },
    response_class=StreamingResponse,
)
async def run_events(
    run_id: str,
    request: Request,
    history: HistoryDep,
    bus: BusDep,
    slots: Annotated[StreamSlots, Depends(get_stream_slots)],
    last_event_id: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every stored event, then live ones; ends once the run is terminal and all was sent.

    Resume with the `Last-Event-ID` header (browsers do it on reconnect) or `?last_event_id=`.
    Authenticate with the Authorization header or the dashboard's session cookie.
    """
    await run_in_threadpool(_get_run, history, run_id)
    after = last_event_id or 0
    if last_event_id_header and last_event_id_header.strip().isdigit():
        after = max(after, int(last_event_id_header.strip()))
    slots.acquire()
    return SlotStreamingResponse(
        _stream(run_id, after, request, history, bus),
        slots=slots,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _format(event: StoredEvent) -> str:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {to_json(event.data)}\n\n"


async def _stream(run_id: str, after: int, request: Request, history: RunHistory, bus: BusDep) -> AsyncIterator[str]:
    wake = bus.subscribe(run_id)  # before reading the DB: nothing can slip between the two
    try:
        while True:
            wake.clear()
            for event in await run_in_threadpool(history.events_after, run_id, after):
                yield _format(event)
                after = event.seq
                if event.type == STATUS_EVENT and event.data.get("status") in TERMINAL_STATUSES:
                    return
            run = await run_in_threadpool(history.get_run, run_id)
            if run is None or (
                run.status in TERMINAL_STATUSES and not await run_in_threadpool(history.events_after, run_id, after)
            ):
                return
            try:
                await asyncio.wait_for(wake.wait(), KEEPALIVE_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": keep-alive\n\n"
    finally:
        bus.unsubscribe(run_id, wake)


@router.post(
    "/{run_id}/stop",
    status_code=202,
    response_model=StoppingRun,
    responses={**NOT_FOUND, 409: {"model": Message, "description": "The run already ended."}, 503: {"model": Message}},
)
def stop_run(run_id: str, service: ServiceDep) -> StoppingRun:
    """Ask Flower to stop the run; its status becomes `stopped` once the SuperLink confirms."""
    service.stop(run_id)
    return StoppingRun(run_id=run_id)


@router.get("/{run_id}/logs", response_model=RunLogs, responses=NOT_FOUND)
def run_logs(
    run_id: str,
    history: HistoryDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="First line to return (0-based).")] = 0,
    limit: Annotated[int, Query(ge=1, le=LOG_PAGE_MAX, description="Most lines to return.")] = 1000,
) -> RunLogs:
    """The ServerApp's output as read from the SuperLink so far, a page of lines at a time.

    `next_offset` is the `offset` of the next page, null on the last one.
    """
    _get_run(history, run_id)
    lines, more = history.log_lines(run_id, offset, limit)
    return RunLogs(
        run_id=run_id, logs="".join(lines), offset=offset, limit=limit, next_offset=offset + len(lines) if more else None
    )


@router.delete(
    "/{run_id}",
    response_model=DeletedRun,
    responses={
        **NOT_FOUND,
        409: {"model": Message, "description": "The run is still active, or its checkpoints cannot be deleted."},
    },
)
def delete_run(run_id: str, history: HistoryDep, request: Request) -> DeletedRun:
    """Remove a finished run: its record, events, rounds, logs, spans and checkpoint files."""
    deleted = request.app.state.retention.delete(_get_run(history, run_id))
    return DeletedRun(run_id=run_id, **dataclasses.asdict(deleted))
