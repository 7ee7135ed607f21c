"""Local mode's trace backend: OTLP/HTTP in, one trace out for the waterfall view.

In compose, exporters send to Tempo and the dashboard links to Grafana; locally the
backend is the collector, so `flowerbed up` works without any other service.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import BaseModel

from flowerbed.api.deps import SettingsDep
from flowerbed.api.schemas import Message
from flowerbed.traces.otlp_ingest import OtlpDecodeError, OtlpTooLarge, decode
from flowerbed.traces.trace_store import TraceStore

router = APIRouter(tags=["traces"])
EXPORT_PATH = "/v1/traces"
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def get_traces(request: Request) -> TraceStore:
    return request.app.state.traces


TracesDep = Annotated[TraceStore, Depends(get_traces)]


class TraceOut(BaseModel):
    trace_id: str
    spans: list[dict[str, Any]]


@router.post(
    EXPORT_PATH,
    summary="OTLP/HTTP trace export (protobuf or JSON)",
    response_class=Response,
    responses={
        200: {
            "content": {"application/x-protobuf": {}, "application/json": {}},
            "description": "ExportTraceServiceResponse, in the request's encoding",
        },
        400: {"model": Message, "description": "Not an OTLP trace export"},
        413: {"model": Message, "description": "Body too large, compressed (FLOWERBED_MAX_OTLP_BODY_BYTES) or not"},
    },
)
async def export_traces(request: Request, traces: TracesDep, settings: SettingsDep) -> Response:
    body = await request.body()  # at most FLOWERBED_MAX_OTLP_BODY_BYTES: flowerbed.api.limits cuts it off
    content_type = request.headers.get("content-type", "application/x-protobuf")
    encoding = request.headers.get("content-encoding", "")
    try:
        # Inflating and protobuf decoding are CPU work: off the event loop, like the insert.
        rows = await run_in_threadpool(decode, body, content_type, encoding, settings.max_otlp_decompressed_bytes)
    except OtlpTooLarge as exc:
        raise HTTPException(413, f"body: {exc}; lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE") from None
    except OtlpDecodeError as exc:
        raise HTTPException(400, f"body: {exc}") from None
    await run_in_threadpool(traces.add, rows)
    if content_type.startswith("application/json"):
        return Response("{}", media_type="application/json")
    return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")


@router.get(
    "/traces/{trace_id}", response_model=TraceOut, responses={404: {"model": Message, "description": "No spans for this trace"}}
)
def get_trace(
    trace_id: Annotated[str, Path(pattern=TRACE_ID.pattern, description="32 hex digits")], traces: TracesDep
) -> TraceOut:
    spans = traces.trace(trace_id)
    if not spans:
        raise HTTPException(404, f"no spans stored for trace {trace_id} (local mode keeps the newest spans only)")
    return TraceOut(trace_id=trace_id, spans=spans)
