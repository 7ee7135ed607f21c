"""Fixtures for API tests: a real `flowerbed serve` process on a free port, and PostgreSQL.

`backend` yields (base_url, token, federation, data_dir) for a backend process in its
own process group, wired to a real 2-node federation; `backend_factory` starts more
(e.g. to kill -9 and restart one on the same database). `postgres_url` is a
throwaway database on the machine's PostgreSQL 15, dropped afterwards.
Every process started here is stopped by process group at teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from conftest import env_extra, free_port, running_federation

from flowerbed import api_client, sse
from flowerbed.local import launcher, process_groups
from flowerbed.local.process_leash import leash
from flowerbed.runs.run_status import TERMINAL_STATUSES

TERMINAL = TERMINAL_STATUSES  # the API tests' name for run_status's one list
# Small runs: the machine is shared; these keep a round to a few seconds of compute.
QUICK_RUN = {
    "max_train_examples": 200,
    "max_test_examples": 1000,
    "batch_size": 50,
    "fraction_train": 1.0,
    "min_nodes": 2,
    "min_available_nodes": 2,
}


class Backend(NamedTuple):
    base_url: str
    token: str
    federation: launcher.Federation
    data_dir: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        return api_client.connect(self.base_url, self.token, **kwargs)


@dataclass
class BackendProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    token: str
    data_dir: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs: Any) -> httpx.Client:
        return api_client.connect(self.base_url, self.token, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        stop_group(self.proc, sig, grace)


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Stop a server's process group (a teardown never hangs on a stuck server), then reap the Popen."""
    process_groups.stop_groups([proc.pid], grace, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def spawn_backend(
    data_dir: Path,
    superlink_url: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
    log_level: str = "warning",
) -> BackendProcess:
    """`flowerbed serve` as a subprocess in its own process group; returns once /ready is 200."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    token = (env or {}).get("FLOWERBED_API_TOKEN") or new_token()
    proc_env = {
        **os.environ,
        **env_extra(),
        "FLOWERBED_DATA_DIR": str(data_dir),
        "FLOWERBED_SUPERLINK_URL": superlink_url,
        "FLOWERBED_API_TOKEN": token,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log = data_dir / f"backend-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowerbed.cli", "serve", "--port", str(port), "--log-level", log_level],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=proc_env,
            start_new_session=True,
            preexec_fn=leash(),  # gone with this test session, however it ends
        )
    backend = BackendProcess(proc, f"http://127.0.0.1:{port}", token, data_dir, log, env or {})
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"backend exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(backend.base_url + "/ready", timeout=5).status_code == 200:
                return backend
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            backend.stop(signal.SIGKILL)
            raise TimeoutError(f"backend not ready in {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def new_token() -> str:
    """A token the backend's secret policy accepts (at least 24 characters, random)."""
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.fixture
def backend_factory() -> Iterator[Callable[..., BackendProcess]]:
    started: list[BackendProcess] = []

    def factory(*args: Any, **kwargs: Any) -> BackendProcess:
        backend = spawn_backend(*args, **kwargs)
        started.append(backend)
        return backend

    yield factory
    for backend in reversed(started):
        backend.stop()


def traced_backend(
    start_federation: Callable[..., launcher.Federation],
    backend_factory: Callable[..., BackendProcess],
    directory: Path,
    nodes: int = 2,
) -> BackendProcess:
    """Local mode with tracing: a federation of `nodes` whose every process exports its spans to
    the backend started on it, which collects them (`local_tracing_env`), as `flowerbed up` has it."""
    from flowerbed.local.backend_process import local_tracing_env

    port, token = free_port(), new_token()
    otel_env = {**local_tracing_env(port, token), "OTEL_BSP_SCHEDULE_DELAY": "200"}
    federation = start_federation(nodes, extra_env=otel_env)
    return backend_factory(directory, federation.superlink_url, port=port, env={**otel_env, "FLOWERBED_API_TOKEN": token})


@pytest.fixture(scope="session")
def api_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.Federation]:
    """A 2-node federation shared by the API tests (started once: Flower start-up is slow here)."""
    with running_federation(tmp_path_factory.mktemp("api-federation"), 2) as federation:
        yield federation


@pytest.fixture(scope="session")
def backend(api_federation: launcher.Federation) -> Iterator[Backend]:
    """(base_url, token, federation, data_dir) of a real backend on the shared federation."""
    data_dir = Path(api_federation.data_dir)
    process = spawn_backend(data_dir, api_federation.superlink_url)
    yield Backend(process.base_url, process.token, api_federation, data_dir)
    process.stop()


@pytest.fixture(scope="session")
def postgres_backend(api_federation: launcher.Federation, postgres_server: str, tmp_path_factory) -> Iterator[Backend]:
    """Like `backend`, on a PostgreSQL database (its own data dir and model store)."""
    data_dir = tmp_path_factory.mktemp("postgres-backend")
    with postgres_database(postgres_server) as url:
        process = spawn_backend(data_dir, api_federation.superlink_url, env={"FLOWERBED_DATABASE_URL": url})
        try:
            yield Backend(process.base_url, process.token, api_federation, data_dir)
        finally:
            process.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def any_backend(request: pytest.FixtureRequest) -> Backend:
    """The shared backend on SQLite, then on PostgreSQL: API tests that take it run on both databases."""
    return request.getfixturevalue("backend" if request.param == "sqlite" else "postgres_backend")


# -- helpers used by the API tests --------------------------------------------------
def read_sse(base_url: str, token: str, run_id: str, timeout: float = 600.0, last_event_id: int | None = None) -> list[dict]:
    """Every SSE event of a run until the stream ends (run terminal); fails on timeout."""
    events: list[dict] = []
    with (
        api_client.connect(base_url, token) as client,
        api_client.event_stream(client, run_id, last_event_id, timeout=timeout) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in sse.parse(response.iter_lines()):
            events.append({"id": event.id, "event": event.event, "data": event.data})
    return events


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def start_run(client: httpx.Client, **config: Any) -> dict:
    response = api_client.start_run(client, {**QUICK_RUN, **config})
    assert response.status_code == 202, response.text
    return response.json()


# -- PostgreSQL ---------------------------------------------------------------------
# The backend refuses a database password shorter than 24 characters (flowerbed.secret_policy).
PG_ROLE = "flowerbed_tester"
PG_PASSWORD = "flowerbed-tester-5b1c0e9d7a3f42d8"
PG_INSTALL_HINT = (
    "PostgreSQL 15 is required for the database tests: `apt-get install postgresql-15` (or `make setup` as root), "
    "then `pg_ctlcluster 15 main start`"
)


def _psql(sql: str, database: str = "postgres") -> str:
    command = ["psql", "-v", "ON_ERROR_STOP=1", "-qAt", "-d", database, "-c", sql]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {sql}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """Host:port of a running local PostgreSQL 15 with our test role; fails (never skips) if absent."""
    if not Path("/usr/lib/postgresql/15/bin/postgres").exists():
        pytest.fail(PG_INSTALL_HINT)
    status = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    if "15 main" in status and " down " in status:
        if os.geteuid() != 0:
            pytest.fail(f"PostgreSQL 15 is installed but not running: `sudo pg_ctlcluster 15 main start`. {PG_INSTALL_HINT}")
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True, timeout=60)
    port = next((line.split()[2] for line in status.splitlines() if line.startswith("15 main")), "5432")
    if not _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{PG_ROLE}'").strip():
        _psql(f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{PG_PASSWORD}' CREATEDB")
    return f"127.0.0.1:{port}"


@contextlib.contextmanager
def postgres_database(server: str) -> Iterator[str]:
    """URL of a new, empty database on `server`, dropped afterwards."""
    name = f"flowerbed_test_{uuid.uuid4().hex[:10]}"
    _psql(f"CREATE DATABASE {name} OWNER {PG_ROLE}")
    try:
        yield f"postgresql+psycopg://{PG_ROLE}:{PG_PASSWORD}@{server}/{name}"
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A throwaway database, dropped after the test."""
    with postgres_database(postgres_server) as url:
        yield url
