"""Boots a compose stack on the real Docker engine for one test module, and always tears it down.

The same harness as `make compose-up` (deploy/compose_harness): the engine started when needed,
stand-in bases from Debian packages, our images, `docker compose up --wait` on the unchanged
compose files plus the harness override. Each stack is a project of its own (random suffix, free
host ports), so parallel runs never collide; teardown removes its containers, networks and volumes
even when a test failed. Without an engine the tests fail with the reason — they never skip.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from compose_harness import engine, standins
from compose_harness.stack import ComposeStack, node_data_env
from flowerbed.local.topology import free_port_block

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TERMINAL = {"completed", "failed", "stopped"}
# Tiny runs: a few hundred examples per client, every node in every round.
TINY_RUN = {
    "max_train_examples": 200,
    "max_test_examples": 1000,
    "min_available_nodes": 3,
    "fraction_train": 1.0,
    "partitioner": "iid",
}


@dataclass
class Booted:
    stack: ComposeStack
    token: str
    api: str  # the backend's published port
    web: str  # the dashboard's published port (nginx, which proxies the API)
    build_seconds: float
    up_seconds: float
    # supernode-<n>'s own data directory (index n-1), mounted read-only into its executor; empty until a test fills it.
    node_data: list[Path] = field(default_factory=list)

    def request(self, method: str, path: str, body: Any = None, token: str | None = "default", base: str | None = None):
        """(status, headers, body bytes) of one HTTP request to the stack (the backend port unless `base`)."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token if token == 'default' else token}"
        req = urllib.request.Request(
            (base or self.api) + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, _, payload = self.request(method, path, body, **kwargs)
        assert 200 <= status < 300, f"{method} {path} → {status}: {payload[:500]!r}"
        return json.loads(payload)

    def start_run(self, **overrides: Any) -> str:
        return self.json("POST", "/training/start", {**TINY_RUN, **overrides})["run_id"]

    def wait_run(self, run_id: str, until: Callable[[dict], bool], timeout: float, what: str) -> dict:
        """Poll the run until `until(detail)`; a bounded wait whose failure shows the stack's state."""
        deadline = time.monotonic() + timeout
        detail: dict = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, _, payload = self.request("GET", f"/training/{run_id}")
                if status == 200:
                    detail = json.loads(payload)
                    if until(detail):
                        return detail
            time.sleep(2)
        raise AssertionError(f"run {run_id}: not {what} after {timeout:.0f}s: {detail}\n{self.stack.diagnose()}")

    def wait_finished(self, run_id: str, timeout: float = 900.0) -> dict:
        return self.wait_run(run_id, lambda d: d["status"] in TERMINAL, timeout, "finished")

    def wait_healthy(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {c["Service"]: (c["State"], c.get("Health", "")) for c in self.stack.ps()}
            if all(state == "running" and health in ("", "healthy") for state, health in _long_running(states)):
                return
            time.sleep(2)
        raise AssertionError(f"not every service is healthy after {timeout:.0f}s:\n{self.stack.diagnose()}")


def _long_running(states: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    return [s for name, s in states.items() if name not in ONE_SHOT]


# compose.yaml marks its one-shot jobs with the label org.flowerbed.one-shot (tests/e2e/test_compose.py
# checks every one of them is listed here).
ONE_SHOT = {"preflight", "volumes-init", "certs", "supernode-register"}


def record_timing(name: str, **values: float | str) -> None:
    """Build/boot timings of this run, for BENCHMARKS.md (test-artifacts/compose-timings.jsonl)."""
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "compose-timings.jsonl", "a") as f:
        f.write(json.dumps({"stack": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **values}) + "\n")


@contextlib.contextmanager
def booted_stack(
    workdir: Path, tls: bool = False, services: tuple[str, ...] = (), extra_env: dict[str, str] | None = None
) -> Iterator[Booted]:
    """`services`: only these and what they depend on (default: all); `extra_env`: more .env variables."""
    try:
        engine.ensure_engine(ROOT / ".flowerbed")
        engine.ensure_compose_plugin()
    except engine.EngineUnavailable as error:
        pytest.fail(f"the compose tests need a Docker engine and compose v2: {error}")
    started = time.monotonic()
    standins.build_standins(log=lambda _msg: None)
    standin_seconds = time.monotonic() - started
    ports = {name: free_port_block(1) for name in ("FLOWERBED_API_PORT", "FLOWERBED_WEB_PORT", "FLOWERBED_FLEET_PORT")}
    # Per-stack site directories (not the repository's ./data defaults): the node-data test fills them.
    node_data = node_data_env(workdir)
    stack = ComposeStack(
        project=f"fbtest-{secrets.token_hex(3)}",
        workdir=workdir,
        tls=tls,
        ports=ports,
        extra_env={**{name: str(path) for name, path in node_data.items()}, **(extra_env or {})},
    )
    env = stack.write_env()
    # A CI timeout sends SIGTERM: turn it into an interrupt so the `finally` below still removes the stack.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        build_seconds = stack.build(log=lambda _msg: None)
        up_seconds = stack.up(services=services)
        record_timing(
            stack.project,
            tls=str(tls),
            standins_s=round(standin_seconds, 1),
            build_s=round(build_seconds, 1),
            up_s=round(up_seconds, 1),
        )
        yield Booted(
            stack,
            env["FLOWERBED_API_TOKEN"],
            stack.url("FLOWERBED_API_PORT"),
            stack.url("FLOWERBED_WEB_PORT"),
            build_seconds,
            up_seconds,
            list(node_data.values()),
        )
    finally:
        stack.down(volumes=True)
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}: removing the compose stack first")
