"""OpenTelemetry for the ServerApp and ClientApp: one setup, W3C context in run config.

Flower emits no traces, so we make a training one trace: the backend's request span
→ `fl.run` → `fl.round` → `fl.client.train` → `train.epoch` → `train.step`. Context
crosses process boundaries as a W3C `traceparent` string (run config for the
ServerApp, every message's ConfigRecord for ClientApps).

Configured only by the standard `OTEL_*` environment. With no OTLP endpoint set (or
`OTEL_SDK_DISABLED=true`) tracing is off and the SDK is never imported: a ClientApp
process lives for one message, and every import is paid on every round.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_provider: Any = None


def enabled() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def preload() -> None:
    """Import the SDK and the HTTP exporter now if tracing is on (for a process that forks
    ClientApps and should not pay these imports in each); starts nothing. The gRPC exporter
    is left to `setup`: gRPC's runtime and fork do not mix."""
    if enabled() and _protocol() != "grpc":
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace.export  # noqa: F401


def _protocol() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))


def setup(service_name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Install a tracer provider with an OTLP exporter (http/protobuf or grpc) once."""
    global _provider
    if _provider is not None or not enabled():
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from flowerbed_app import __version__

    if _protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name,
            "service.version": __version__,
            **{k: v for k, v in (attributes or {}).items() if v is not None},
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    atexit.register(flush)


def flush(timeout_ms: int = 5000) -> None:
    """Export what is buffered; short-lived ClientApps call this before replying."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def tracer() -> trace.Tracer:
    return trace.get_tracer("flowerbed")


def traceparent_of(span: Span | None = None) -> str:
    """The W3C traceparent of `span` (or the current one); '' when not recording."""
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def span(name: str, parent_traceparent: str = "", **attributes: Any) -> Iterator[Span]:
    """A span; a non-empty traceparent makes it the child of a remote span."""
    token = None
    if parent_traceparent:
        token = otel_context.attach(_PROPAGATOR.extract({"traceparent": parent_traceparent}))
    try:
        with tracer().start_as_current_span(name, record_exception=True, set_status_on_exception=True) as current:
            for key, value in attributes.items():
                if value is not None:
                    current.set_attribute(key, value)
            yield current
    finally:
        if token is not None:
            otel_context.detach(token)


@contextlib.contextmanager
def use_span(current: Span | None) -> Iterator[None]:
    """Make `current` the parent of spans opened inside (no-op for None)."""
    if current is None:
        yield
        return
    with trace.use_span(current, end_on_exit=False):
        yield


def trace_id_of(current: Span) -> str:
    """Hex trace id ('' when tracing is off), for linking runs to their trace."""
    ctx = current.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def mark_error(current: Span, reason: str) -> None:
    current.set_status(Status(StatusCode.ERROR, reason))
