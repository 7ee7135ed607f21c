"""Decode OTLP/HTTP trace exports (protobuf or JSON) into flat span rows.

In local mode there is no Tempo: every Flowerbed process exports its spans to the
backend, which keeps them for the dashboard's waterfall. We decode with the official
opentelemetry-proto messages; the only hand-written part is OTLP/JSON's id encoding
(hex strings, where protobuf's JSON mapping expects base64), which no library
converts for us.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}


class OtlpDecodeError(ValueError):
    """The body is not an OTLP trace export; the message says why."""


class OtlpTooLarge(ValueError):
    """The export decompresses to more than the limit (a gzip bomb, or batches far too big)."""


def decode(body: bytes, content_type: str, content_encoding: str = "", max_decompressed: int = 64 << 20) -> list[dict[str, Any]]:
    """Span rows from one export request. CPU-bound: call it off the event loop."""
    body = decompress(body, content_encoding.strip().lower(), max_decompressed)
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


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body decoded per Content-Encoding, never inflating past `limit` bytes.

    zlib's `max_length` stops the inflater at the limit, so a small body that would expand
    to gigabytes costs at most `limit` bytes of memory before it is refused. Gzip bodies
    may hold several members (RFC 1952); each is inflated in turn.
    """
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise OtlpTooLarge(f"export body over {limit} bytes (FLOWERBED_MAX_OTLP_DECOMPRESSED_BYTES)")
        return body
    if encoding not in ("gzip", "deflate"):
        raise OtlpDecodeError(f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    out = bytearray()
    data = body
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise OtlpTooLarge(f"export decompresses to over {limit} bytes (FLOWERBED_MAX_OTLP_DECOMPRESSED_BYTES); refused")
            if not inflater.eof:
                raise OtlpDecodeError(f"body is not valid {encoding}: truncated stream")
            data = inflater.unused_data
            if not data or encoding != "gzip":
                break
    except zlib.error as exc:
        raise OtlpDecodeError(f"body is not valid {encoding}: {exc}") from exc
    if data:
        raise OtlpDecodeError(f"body is not valid {encoding}: trailing bytes after the stream")
    return bytes(out)


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
