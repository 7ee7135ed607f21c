"""Decode OTLP/HTTP trace exports (protobuf or JSON) into flat span rows.

In local mode there is no Tempo: every Flowerbed process exports its spans to the
backend, which keeps them for the dashboard's waterfall. We decode with the official
opentelemetry-proto messages; the only hand-written part is OTLP/JSON's id encoding
(hex strings, where protobuf's JSON mapping expects base64), which no library
converts for us.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}


class OtlpDecodeError(ValueError):
    """The body is not an OTLP trace export; the message says why."""


def decode(body: bytes, content_type: str, content_encoding: str = "") -> list[dict[str, Any]]:
    """Span rows from one export request."""
    try:
        if content_encoding == "gzip":
            body = gzip.decompress(body)
        elif content_encoding == "deflate":
            body = zlib.decompress(body)
    except (OSError, zlib.error) as exc:
        raise OtlpDecodeError(f"body is not valid {content_encoding}: {exc}") from exc
    request = ExportTraceServiceRequest()
    media = content_type.split(";")[0].strip().lower()
    try:
        if media == "application/json":
            json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), request, ignore_unknown_fields=True)
        elif media in ("application/x-protobuf", "application/protobuf", ""):
            request.ParseFromString(body)
        else:
            raise OtlpDecodeError(f"unsupported content type {content_type!r}; use application/x-protobuf or application/json")
    except OtlpDecodeError:
        raise
    except Exception as exc:  # protobuf's DecodeError, JSON errors, ParseError: all mean a bad body
        raise OtlpDecodeError(f"not an OTLP ExportTraceServiceRequest: {exc}") from exc
    return list(_rows(request))


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str) and value:
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError as exc:
                    raise OtlpDecodeError(f"{key} must be hex, got {value!r}") from exc
            out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def _rows(request: ExportTraceServiceRequest) -> Any:
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        service = str(resource.get("service.name", "unknown"))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise OtlpDecodeError(f"span {span.name!r} has an invalid trace or span id")
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "name": span.name[:200],
                    "service": service[:100],
                    "start_ns": int(span.start_time_unix_nano),
                    "end_ns": int(span.end_time_unix_nano),
                    "status": STATUS_CODES.get(span.status.code, "unset"),
                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                    "resource": resource,
                    "events": [
                        {
                            "name": e.name,
                            "time_ns": int(e.time_unix_nano),
                            "attributes": {a.key: _value(a.value) for a in e.attributes},
                        }
                        for e in span.events
                    ],
                }
