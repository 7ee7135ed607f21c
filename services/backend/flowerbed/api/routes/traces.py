"""Local mode's trace backend: OTLP/HTTP in, one trace out for the waterfall view.

In compose, exporters send to Tempo and the dashboard links to Grafana; locally the
backend is the collector, so `flowerbed up` works without any other service.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import BaseModel

from flowerbed.otlp_ingest import OtlpDecodeError, decode
from flowerbed.trace_store import TraceStore

router = APIRouter(tags=["traces"])
MAX_EXPORT_BYTES = 16 * 1024 * 1024
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def get_traces(request: Request) -> TraceStore:
    return request.app.state.traces


TracesDep = Annotated[TraceStore, Depends(get_traces)]


class TraceOut(BaseModel):
    trace_id: str
    spans: list[dict[str, Any]]


@router.post(
    "/v1/traces",
    summary="OTLP/HTTP trace export (protobuf or JSON)",
    responses={400: {"description": "Not an OTLP trace export"}, 413: {"description": "Body too large"}},
)
async def export_traces(request: Request, traces: TracesDep) -> Response:
    body = await request.body()
    if len(body) > MAX_EXPORT_BYTES:
        raise HTTPException(413, f"export body over {MAX_EXPORT_BYTES} bytes; lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
    content_type = request.headers.get("content-type", "application/x-protobuf")
    try:
        rows = decode(body, content_type, request.headers.get("content-encoding", ""))
    except OtlpDecodeError as exc:
        raise HTTPException(400, f"body: {exc}") from None
    traces.add(rows)
    if content_type.startswith("application/json"):
        return Response("{}", media_type="application/json")
    return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")


@router.get("/traces/{trace_id}", response_model=TraceOut, responses={404: {"description": "No spans for this trace"}})
def get_trace(
    trace_id: Annotated[str, Path(pattern=TRACE_ID.pattern, description="32 hex digits")], traces: TracesDep
) -> TraceOut:
    spans = traces.trace(trace_id)
    if not spans:
        raise HTTPException(404, f"no spans stored for trace {trace_id} (local mode keeps the newest spans only)")
    return TraceOut(trace_id=trace_id, spans=spans)
