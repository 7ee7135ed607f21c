"""Safe by default, against real processes: secrets, authentication, limits before parsing, no secret in a URL.

One "strict" backend (reads need the token, small caps, access log on, spans exported to a
real OTLP receiver) on the shared 2-node federation serves most tests; nginx runs in front
of it with the dashboard's own configuration. Processes that must refuse to start are
started and watched exiting.
"""

from __future__ import annotations

import gzip
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend_fixture import QUICK_RUN, BackendProcess, new_token, spawn_backend, wait_for
from conftest import free_port
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_receiver import OtlpReceiver

from flowerbed import launcher

pytestmark = pytest.mark.federation
ROOT = Path(__file__).resolve().parent.parent
MAX_SSE, MAX_RUNS = 2, 1


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def strict(api_federation: launcher.Federation, receiver: OtlpReceiver, tmp_path_factory) -> Iterator[BackendProcess]:
    env = {
        "FLOWERBED_REQUIRE_TOKEN_FOR_READS": "true",
        "FLOWERBED_MAX_SSE_STREAMS": str(MAX_SSE),
        "FLOWERBED_MAX_ACTIVE_RUNS": str(MAX_RUNS),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    process = spawn_backend(tmp_path_factory.mktemp("strict-backend"), api_federation.superlink_url, env=env, log_level="info")
    yield process
    process.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- secrets ------------------------------------------------------------------------------
def _serve_refuses(env: dict[str, str], tmp_path: Path) -> str:
    """Start `flowerbed serve` with this env; it must exit non-zero before listening. Returns its output."""
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWERBED_")}
    proc_env.update({"FLOWERBED_DATA_DIR": str(tmp_path), "FLOWERBED_SUPERLINK_URL": "127.0.0.1:9", **env})
    result = subprocess.run(
        [sys.executable, "-m", "flowerbed.cli", "serve", "--port", str(free_port())],
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Uvicorn running" not in result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("env", "named", "why"),
    [
        ({"FLOWERBED_API_TOKEN": "replace-with-openssl-rand-hex-32"}, "FLOWERBED_API_TOKEN", "placeholder"),
        ({"FLOWERBED_API_TOKEN": ""}, "FLOWERBED_API_TOKEN", "is empty"),
        ({"FLOWERBED_API_TOKEN": "0123456789abcdef"}, "FLOWERBED_API_TOKEN", "too short (16 characters, at least 24"),
        ({"FLOWERBED_API_TOKEN": "a" * 40}, "FLOWERBED_API_TOKEN", "too repetitive"),
        (
            {
                "FLOWERBED_API_TOKEN": new_token(),
                "FLOWERBED_DATABASE_URL": "postgresql+psycopg://fb:replace-with-a-strong-password@db/fb",
            },
            "FLOWERBED_DATABASE_URL",
            "password that is still a placeholder",
        ),
        (
            {"FLOWERBED_API_TOKEN": new_token(), "FLOWERBED_DATABASE_URL": "postgresql+psycopg://fb:hunter2@db/fb"},
            "FLOWERBED_DATABASE_URL",
            "password that is too short",
        ),
    ],
    ids=["placeholder-token", "empty-token", "short-token", "repetitive-token", "placeholder-db-password", "short-db-password"],
)
def test_the_backend_refuses_to_start_with_a_weak_secret(env: dict[str, str], named: str, why: str, tmp_path: Path) -> None:
    output = _serve_refuses(env, tmp_path)
    assert f"{named} {why}" in output or (named in output and why in output), output
    assert "openssl rand -hex 32" in output  # how to make a good one
    for secret in ("replace-with-openssl-rand-hex-32", "replace-with-a-strong-password", "0123456789abcdef", "hunter2", "a" * 40):
        assert secret not in output  # never echoed


def test_check_secrets_names_each_bad_variable(tmp_path: Path) -> None:
    """`flowerbed check-secrets VAR…`: compose's preflight; the same policy, exit 1 naming each bad one."""
    good = new_token()
    env = {
        **os.environ,
        "FLOWERBED_API_TOKEN": good,
        "POSTGRES_PASSWORD": "replace-with-a-strong-password",
        "GRAFANA_ADMIN_PASSWORD": "admin",
        "FLOWERBED_DATABASE_URL": f"postgresql+psycopg://u:{good}@db/x",
    }
    env.pop("UNSET_SECRET", None)
    command = [sys.executable, "-m", "flowerbed.cli", "check-secrets"]
    bad = subprocess.run(
        [*command, "FLOWERBED_API_TOKEN", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "UNSET_SECRET"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split()[1] for e in errors] == ["POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "UNSET_SECRET"], bad.stderr
    assert "placeholder" in errors[0] and "too short" in errors[1] and "not set" in errors[2]
    assert good not in bad.stdout + bad.stderr
    ok = subprocess.run(
        [*command, "FLOWERBED_API_TOKEN", "FLOWERBED_DATABASE_URL"], env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0 and ok.stdout.startswith("ok: FLOWERBED_API_TOKEN, FLOWERBED_DATABASE_URL"), ok.stderr


# -- authentication ---------------------------------------------------------------------------
def _get_paths(strict: BackendProcess) -> list[str]:
    """Every GET path of the API (from its own schema), with placeholders filled, plus the extras."""
    schema = httpx.get(f"{strict.base_url}/openapi.json", headers=_bearer(strict.token), timeout=30).json()
    public = ("/health", "/ready", "/auth/session")
    paths = [p for p, ops in schema["paths"].items() if "get" in ops and p not in public]
    values = {"{run_id}": "nope", "{model_id}": "nope-round-0001", "{trace_id}": "0" * 32}
    for placeholder, value in values.items():
        paths = [p.replace(placeholder, value) for p in paths]
    return [*sorted(paths), "/metrics", "/docs", "/redoc", "/openapi.json"]


def test_every_read_needs_authentication_when_required(strict: BackendProcess) -> None:
    """FLOWERBED_REQUIRE_TOKEN_FOR_READS=true: 401 on every read, /metrics and the docs included; ?token= opens nothing."""
    paths = _get_paths(strict)
    assert {"/training", "/training/nope/events", "/models/nope-round-0001/download", "/nodes", "/metrics", "/docs"} <= set(paths)
    for path in paths:
        anonymous = httpx.get(strict.base_url + path, timeout=30)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        # The token in the query string no longer authenticates anything (it did for SSE before).
        assert httpx.get(strict.base_url + path, params={"token": strict.token}, timeout=30).status_code == 401, path
        assert httpx.get(strict.base_url + path, headers=_bearer(strict.token), timeout=30).status_code in (200, 404), path
    for public in ("/health", "/ready", "/auth/session", "/"):
        assert httpx.get(strict.base_url + public, timeout=30).status_code == 200, public


def test_a_session_cookie_authenticates_reads_and_mutations_need_its_csrf_token(strict: BackendProcess) -> None:
    with httpx.Client(base_url=strict.base_url, timeout=30) as browser:
        assert browser.post("/auth/session", headers=_bearer("wrong-" + strict.token)).status_code == 401
        opened = browser.post("/auth/session", headers=_bearer(strict.token))
        assert opened.status_code == 200, opened.text
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith("flowerbed_session=") and strict.token not in cookie
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes, cookie
        csrf = opened.json()["csrf_token"]
        assert opened.json()["authenticated"] and csrf and csrf not in cookie
        assert browser.get("/training").status_code == 200  # the cookie alone reads
        assert browser.get("/auth/session").json()["csrf_token"] == csrf
        forbidden = browser.post("/training/nope/stop")
        assert forbidden.status_code == 403 and "X-CSRF-Token" in forbidden.json()["detail"]
        assert browser.post("/training/nope/stop", headers={"X-CSRF-Token": "x" + csrf}).status_code == 403
        assert browser.post("/training/nope/stop", headers={"X-CSRF-Token": csrf}).status_code == 404  # past auth
        assert browser.delete("/auth/session", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert browser.get("/training").status_code == 401  # signed out
    forged = httpx.get(f"{strict.base_url}/training", cookies={"flowerbed_session": "v1.9999999999.abc.def"}, timeout=30)
    assert forged.status_code == 401


def test_a_login_code_opens_one_session_once(strict: BackendProcess) -> None:
    code = httpx.post(f"{strict.base_url}/auth/login-codes", headers=_bearer(strict.token), timeout=30).json()["code"]
    assert len(code) >= 24 and strict.token not in code
    assert httpx.post(f"{strict.base_url}/auth/login-codes", timeout=30).status_code == 401  # minting needs the token
    with httpx.Client(base_url=strict.base_url, timeout=30) as browser:
        assert browser.post("/auth/session", json={"code": code}).status_code == 200
        assert browser.get("/training").status_code == 200
    again = httpx.post(f"{strict.base_url}/auth/session", json={"code": code}, timeout=30)
    assert again.status_code == 401  # single use
    assert httpx.post(f"{strict.base_url}/auth/session", json={"code": "guess"}, timeout=30).status_code == 401


# -- limits before parsing -------------------------------------------------------------------------
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


def test_an_oversized_body_is_refused_413_before_authentication_and_unread(strict: BackendProcess) -> None:
    """A declared 64 MiB body gets 413 at once although none of it was sent; unauthenticated, not 401."""
    head = f"POST /training/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {64 << 20}\r\n\r\n"
    status, response, _ = _raw_request(strict.base_url, head, iter([b"{"]), wait=20)
    assert status == 413, response
    assert b"1048576 bytes" in response and b"FLOWERBED_MAX_BODY_BYTES" in response


def test_a_chunked_body_is_cut_off_at_the_limit(strict: BackendProcess) -> None:
    """Without a Content-Length the body is counted as it arrives: 413 after about the limit, not after 64 MiB."""
    head = "POST /training/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"x" * 65536
    chunks = (f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for _ in range(1024))  # 64 MiB if all sent
    status, response, sent = _raw_request(strict.base_url, head, chunks, wait=60)
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


def test_a_gzip_bomb_is_refused_by_its_decompressed_size(strict: BackendProcess) -> None:
    headers = {**_bearer(strict.token), "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    bomb = gzip.compress(b"\0" * (80 << 20), compresslevel=9)  # 80 MiB of zeros in ~80 KB
    assert len(bomb) < 200_000
    response = httpx.post(f"{strict.base_url}/v1/traces", content=bomb, headers=headers, timeout=60)
    assert response.status_code == 413, response.text
    assert "FLOWERBED_MAX_OTLP_DECOMPRESSED_BYTES" in response.json()["detail"]
    # A real compressed export still goes through.
    good = httpx.post(f"{strict.base_url}/v1/traces", content=gzip.compress(_export_body(3)), headers=headers, timeout=60)
    assert good.status_code == 200, good.text
    trace = httpx.get(f"{strict.base_url}/traces/{'ab' * 16}", headers=_bearer(strict.token), timeout=30).json()
    assert len(trace["spans"]) >= 3
    too_big = httpx.post(
        f"{strict.base_url}/v1/traces", content=b"\0" * ((16 << 20) + 1), headers={**headers, "Content-Encoding": ""}, timeout=60
    )
    assert too_big.status_code == 413 and "FLOWERBED_MAX_OTLP_BODY_BYTES" in too_big.json()["detail"]


def test_caps_on_active_runs_and_event_streams_are_answered_with_the_limit(strict: BackendProcess) -> None:
    client = httpx.Client(base_url=strict.base_url, headers=_bearer(strict.token), timeout=60)
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


# -- no secret in any URL, span or log line ---------------------------------------------------
def _nginx_in_front(backend: BackendProcess, directory: Path) -> tuple[str, Path, subprocess.Popen[bytes]]:
    """Real nginx with services/web/nginx.conf; only its upstream, port, root and log path point here."""
    nginx = "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is missing: `apt-get install nginx-light` (make setup does it as root)"
    conf = (ROOT / "services/web/nginx.conf").read_text()
    port = free_port()
    log = directory / "access.log"
    replacements = {
        "server backend:8080;": f"server {backend.base_url.removeprefix('http://')};",
        "listen 80;": f"listen 127.0.0.1:{port};",
        "root /usr/share/nginx/html;": f"root {ROOT / 'services/web/dist'};",
        "/var/log/nginx/access.log": str(log),
    }
    for old, new in replacements.items():
        assert conf.count(old) == 1, old
        conf = conf.replace(old, new)
    (directory / "site.conf").write_text(conf)
    temp = directory / "temp"
    temp.mkdir()
    user = "user root;" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(
        f"{user} worker_processes 1; pid {directory / 'nginx.pid'}; error_log {directory / 'error.log'};\n"
        "events { worker_connections 64; }\n"
        f"http {{ include /etc/nginx/mime.types; client_body_temp_path {temp}; proxy_temp_path {temp}; "
        f"fastcgi_temp_path {temp}; uwsgi_temp_path {temp}; scgi_temp_path {temp}; include {directory / 'site.conf'}; }}\n"
    )
    proc = subprocess.Popen(
        [nginx, "-e", str(directory / "error.log"), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url) or proc.poll() is not None, 30, "nginx to listen", 0.2)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    return url, log, proc


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_token_is_in_no_span_and_no_access_log_line(strict: BackendProcess, receiver: OtlpReceiver, tmp_path: Path) -> None:
    """Clients that still put the token in a query string: the backend's spans and uvicorn's and nginx's logs redact it."""
    token = strict.token
    nginx_url, nginx_log, nginx = _nginx_in_front(strict, tmp_path)
    try:
        for base in (strict.base_url, nginx_url):
            for path in ("/training", "/training/nope/events", "/models/nope-round-0001/download", "/nodes"):
                httpx.get(f"{base}{path}?limit=5&token={token}", headers=_bearer(token), timeout=30)
            httpx.post(f"{base}/training/start?token={token}", json={"num_rounds": 0}, headers=_bearer(token), timeout=30)
            with httpx.Client(base_url=base, timeout=30) as browser:  # the dashboard's sign-in, through nginx too
                assert browser.post("/auth/session", headers=_bearer(token)).status_code == 200
                assert browser.get("/training?offset=0").status_code == 200
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)

    def spans_of_the_requests() -> list[Any]:
        return [s for s in list(receiver.spans) if s.service == "flowerbed-backend" and s.name == "GET /training"]

    wait_for(lambda: len(spans_of_the_requests()) >= 4, 30, "the backend's request spans")
    time.sleep(1.0)  # the last batch
    exports = list(receiver.exports)
    assert exports and not [e for e in exports if token.encode() in e], "the token reached the span exporter"
    recorded = json.dumps([s.attributes for s in spans_of_the_requests()])
    assert "token=REDACTED" in recorded and "limit=REDACTED" in recorded, recorded  # the query was there, redacted

    backend_log = strict.log.read_text()
    access = [line for line in backend_log.splitlines() if '"GET /training' in line]
    assert access and any("token=REDACTED" in line for line in access), backend_log[-2000:]
    assert token not in backend_log

    lines = nginx_log.read_text().splitlines()
    assert len(lines) >= 7
    assert any('"GET /training/nope/events HTTP/1.1" 404' in line for line in lines), lines
    assert all("?" not in line and token not in line for line in lines), lines
    assert json.dumps(lines).count("/auth/session") >= 1
