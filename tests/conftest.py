"""Shared fixtures: real local federations on free ports, cleaned up by process group."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from flowerbed.local import launcher
from flowerbed.local.topology import Ports, free_port_block

# Backend fixtures (`backend`, `backend_factory`, `postgres_url`) for the API tests.
pytest_plugins = ["backend_fixture", "model_fixture"]

ROOT = Path(__file__).resolve().parent.parent
DATASET_DIR = "/usr/share/datasets/fashion-mnist"

# Partitions are deterministic: keep them between test sessions (ms instead of s).
os.environ.setdefault("FLOWERBED_CACHE_DIR", str(ROOT / ".flowerbed" / "test-cache"))
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")


def pytest_configure(config: pytest.Config) -> None:
    """A CI timeout sends SIGTERM, which by default ends Python on the spot: no fixture tears
    down, and every federation, backend and `flowerbed up` a test started lives on. Ending
    the session as Ctrl-C does instead runs every teardown. (If the session is then
    SIGKILLed, the processes it started still get SIGTERM from the kernel: process_leash.)"""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, lambda *_: None)  # a second SIGTERM must not cut the teardown short
        raise KeyboardInterrupt("SIGTERM: stopping the test session and everything it started")

    signal.signal(signal.SIGTERM, interrupt)


def free_port() -> int:
    return free_port_block(1)


def free_ports(count: int) -> int:
    """First of `count` consecutive free ports (SuperNodes use base, base+1, …)."""
    return free_port_block(count)


FederationFactory = Callable[..., launcher.Federation]


@pytest.fixture
def start_federation(tmp_path: Path) -> Iterator[FederationFactory]:
    """Start real federations inside this test; all are stopped at teardown."""
    started: list[launcher.Federation] = []

    def factory(
        num_nodes: int = 3,
        data_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
        ports: Ports | None = None,
        **kwargs: object,
    ) -> launcher.Federation:
        directory = data_dir or tmp_path / f"federation-{len(started)}"
        ports = ports or Ports(superlink=free_port(), supernode_base=free_ports(num_nodes))
        env = {**env_extra(), **(extra_env or {})}
        federation = launcher.start(directory, num_nodes, ports, extra_env=env, **kwargs)  # type: ignore[arg-type]
        started.append(federation)
        return federation

    yield factory
    for federation in reversed(started):
        launcher.stop(federation)


def env_extra() -> dict[str, str]:
    return {"FLOWERBED_CACHE_DIR": os.environ["FLOWERBED_CACHE_DIR"]}


@contextlib.contextmanager
def running_federation(directory: Path, num_nodes: int, **kwargs: Any) -> Iterator[launcher.Federation]:
    """A federation on free ports for the duration of the block (session fixtures use it)."""
    ports = Ports(superlink=free_port(), supernode_base=free_ports(num_nodes))
    federation = launcher.start(directory, num_nodes, ports, extra_env=env_extra(), **kwargs)
    try:
        yield federation
    finally:
        launcher.stop(federation)


@pytest.fixture(scope="session")
def shared_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.Federation]:
    """One 3-node federation for the tests that only need *a* federation."""
    with running_federation(tmp_path_factory.mktemp("shared-federation"), 3) as federation:
        yield federation
