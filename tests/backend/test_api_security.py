"""Authentication and no secret in a URL, against real processes.

One "strict" backend (reads need the token, access log on, spans exported to a real OTLP
receiver) on the shared 2-node federation; nginx runs in front of it with the dashboard's
own configuration. Secrets: test_api_secrets; limits: test_api_limits.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend_fixture import BackendProcess, spawn_backend, wait_for
from conftest import free_port
from otlp_receiver import OtlpReceiver

from flowerbed.local import launcher

pytestmark = pytest.mark.federation
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def strict(api_federation: launcher.Federation, receiver: OtlpReceiver, tmp_path_factory) -> Iterator[BackendProcess]:
    env = {
        "FLOWERBED_REQUIRE_TOKEN_FOR_READS": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    process = spawn_backend(tmp_path_factory.mktemp("strict-backend"), api_federation.superlink_url, env=env, log_level="info")
    yield process
    process.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
    assert {
        "/training",
        "/training/nope/events",
        "/models/nope-round-0001/download",
        "/models/nope-round-0001/export",
        "/models/nope-round-0001/lineage",
        "/nodes",
        "/metrics",
        "/docs",
    } <= set(paths)
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
