"""Limits before parsing, against a real backend: body size (413 before authentication, unread), a gzip bomb
refused by its inflated size, and the caps on event streams and active runs answered with the limit.
"""

from __future__ import annotations

import gzip
import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from backend_fixture import QUICK_RUN, BackendProcess, spawn_backend, wait_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flowerbed.local import launcher

pytestmark = pytest.mark.federation
MAX_SSE, MAX_RUNS = 2, 1


@pytest.fixture(scope="module")
def limited(api_federation: launcher.Federation, tmp_path_factory) -> Iterator[BackendProcess]:
    """Small caps, so tests can reach them."""
    env = {"FLOWERBED_MAX_SSE_STREAMS": str(MAX_SSE), "FLOWERBED_MAX_ACTIVE_RUNS": str(MAX_RUNS)}
    process = spawn_backend(tmp_path_factory.mktemp("limited-backend"), api_federation.superlink_url, env=env)
    yield process
    process.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _raw_request(base_url: str, head: str, body_chunks: Iterator[bytes], wait: float = 30.0) -> tuple[int, bytes, int]:
    """Send a request head, then body chunks until the server answers; (status, response, body bytes sent)."""
    host, port = base_url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(head.encode())
        deadline = time.monotonic() + wait
        response = b""
        for chunk in body_chunks:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        while b"\r\n\r\n" not in response and time.monotonic() < deadline:
            if select.select([sock], [], [], 1.0)[0]:
                data = sock.recv(65536)
                if not data:
                    break
                response += data
    assert response, f"no answer within {wait}s"
    return int(response.split(b" ", 2)[1]), response, sent


def test_an_oversized_body_is_refused_413_before_authentication_and_unread(limited: BackendProcess) -> None:
    """A declared 64 MiB body gets 413 at once although none of it was sent; unauthenticated, not 401."""
    head = f"POST /training/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {64 << 20}\r\n\r\n"
    status, response, _ = _raw_request(limited.base_url, head, iter([b"{"]), wait=20)
    assert status == 413, response
    assert b"1048576 bytes" in response and b"FLOWERBED_MAX_BODY_BYTES" in response


def test_a_chunked_body_is_cut_off_at_the_limit(limited: BackendProcess) -> None:
    """Without a Content-Length the body is counted as it arrives: 413 after about the limit, not after 64 MiB."""
    head = "POST /training/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"x" * 65536
    chunks = (f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for _ in range(1024))  # 64 MiB if all sent
    status, response, sent = _raw_request(limited.base_url, head, chunks, wait=60)
    assert status == 413, response
    assert sent < 16 << 20, f"{sent} bytes were sent before the 413"


def _export_body(spans: int, name: str = "span") -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        span = scope.spans.add()
        span.trace_id = bytes.fromhex("ab" * 16)
        span.span_id = (i + 1).to_bytes(8, "big")
        span.name = name
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    return request.SerializeToString()


def test_a_gzip_bomb_is_refused_by_its_decompressed_size(limited: BackendProcess) -> None:
    headers = {**_bearer(limited.token), "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    bomb = gzip.compress(b"\0" * (80 << 20), compresslevel=9)  # 80 MiB of zeros in ~80 KB
    assert len(bomb) < 200_000
    response = httpx.post(f"{limited.base_url}/v1/traces", content=bomb, headers=headers, timeout=60)
    assert response.status_code == 413, response.text
    assert "FLOWERBED_MAX_OTLP_DECOMPRESSED_BYTES" in response.json()["detail"]
    # A real compressed export still goes through.
    good = httpx.post(f"{limited.base_url}/v1/traces", content=gzip.compress(_export_body(3)), headers=headers, timeout=60)
    assert good.status_code == 200, good.text
    trace = httpx.get(f"{limited.base_url}/traces/{'ab' * 16}", headers=_bearer(limited.token), timeout=30).json()
    assert len(trace["spans"]) >= 3
    too_big = httpx.post(
        f"{limited.base_url}/v1/traces", content=b"\0" * ((16 << 20) + 1), headers={**headers, "Content-Encoding": ""}, timeout=60
    )
    assert too_big.status_code == 413 and "FLOWERBED_MAX_OTLP_BODY_BYTES" in too_big.json()["detail"]


def test_caps_on_active_runs_and_event_streams_are_answered_with_the_limit(limited: BackendProcess) -> None:
    client = httpx.Client(base_url=limited.base_url, headers=_bearer(limited.token), timeout=60)
    run = client.post("/training/start", json={**QUICK_RUN, "num_rounds": 50})
    assert run.status_code == 202, run.text
    run_id = run.json()["run_id"]
    streams: list[Any] = []
    try:
        second = client.post("/training/start", json=QUICK_RUN)
        if second.status_code == 202:
            client.post(f"/training/{second.json()['run_id']}/stop")  # the cap failed: leave the federation idle
        assert second.status_code == 409, second.text
        assert second.json()["detail"].startswith(f"{MAX_RUNS} runs are already pending or running")
        assert "FLOWERBED_MAX_ACTIVE_RUNS" in second.json()["detail"]
        for _ in range(MAX_SSE):
            streams.append(_open_stream(client, run_id))
            assert streams[-1][1].status_code == 200
            assert next(streams[-1][2]).startswith("id: ")  # open and sending
        refused = _open_stream(client, run_id)
        body = refused[1].read() if refused[1].status_code == 429 else b""  # a 200 would stream as long as the run
        _close_stream(refused)
        assert refused[1].status_code == 429, refused[1].status_code
        assert f"({MAX_SSE}, the limit set by FLOWERBED_MAX_SSE_STREAMS)" in json.loads(body)["detail"]
        assert refused[1].headers["retry-after"] == "5"
        _close_stream(streams.pop())  # a closed stream gives its slot back

        def slot_free() -> bool:
            probe = _open_stream(client, run_id)
            _close_stream(probe)
            return probe[1].status_code == 200

        wait_for(slot_free, 30, "the closed stream's slot", 0.5)
    finally:
        for stream in streams:
            _close_stream(stream)
        client.post(f"/training/{run_id}/stop")
        wait_for(lambda: client.get(f"/training/{run_id}").json()["status"] in ("stopped", "failed", "completed"), 300, "stop")
        client.close()


def _open_stream(client: httpx.Client, run_id: str) -> tuple[Any, httpx.Response, Iterator[str]]:
    """An open SSE request: its context, response and line iterator (dropping the iterator closes the stream)."""
    context = client.stream("GET", f"/training/{run_id}/events")
    response = context.__enter__()
    return context, response, response.iter_lines()


def _close_stream(stream: tuple[Any, httpx.Response, Iterator[str]]) -> None:
    stream[0].__exit__(None, None, None)
