"""The backend as one process of a local federation (`flowerbed up`, `flowerbed train`).

The launcher owns the Flower processes; this module adds the backend next to them as
a `ProcessSpec` with role "backend", started after the SuperNodes and stopped with
the federation (its own process group, like every other process). Where it listens
is written to `<data_dir>/backend.json` so `flowerbed train` can find it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from flowerbed import launcher, process_groups
from flowerbed.topology import ProcessSpec

STATE_FILE = "backend.json"


@dataclass(frozen=True)
class BackendInfo:
    url: str
    pid: int

    def alive(self) -> bool:
        return launcher._pid_alive(self.pid) and not launcher._is_zombie(self.pid)


def backend_spec(data_dir: Path, superlink_url: str, port: int, host: str = "127.0.0.1") -> ProcessSpec:
    return ProcessSpec(
        "backend",
        "backend",
        [sys.executable, "-m", "flowerbed.cli", "serve", "--host", host, "--port", str(port)],
        env={
            "FLOWERBED_SUPERLINK_URL": superlink_url,
            "FLOWERBED_DATA_DIR": str(data_dir),
            "FLOWERBED_MODEL_STORE": str(data_dir / "models"),
        },
    )


def start_backend(
    federation: launcher.Federation, port: int, timeout: float = 60.0, extra_env: dict[str, str] | None = None
) -> BackendInfo:
    """Spawn the backend for this federation, wait until /ready, record it in federation.json."""
    data_dir = Path(federation.data_dir)
    spec = backend_spec(data_dir, federation.superlink_url, port)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    process = launcher._spawn(spec, env, data_dir / "logs")
    federation.processes.append(process)
    federation.save()
    info = BackendInfo(f"http://127.0.0.1:{port}", process.pid)
    try:
        wait_ready(info, timeout, process.log)
    except BaseException:
        launcher.kill_process(process)
        raise
    (data_dir / STATE_FILE).write_text(json.dumps({"url": info.url, "pid": info.pid}))
    return info


def stop_backend(federation: launcher.Federation, info: BackendInfo, grace: float = 10.0) -> None:
    """Stop a backend this command started for an already running federation."""
    process_groups.stop_groups([info.pid], grace)
    federation.processes = [p for p in federation.processes if p.pid != info.pid]
    federation.save()
    (Path(federation.data_dir) / STATE_FILE).unlink(missing_ok=True)


def wait_ready(info: BackendInfo, timeout: float, log: str = "") -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not info.alive():
            raise RuntimeError(f"the backend exited during start-up; see {log}")
        try:
            response = httpx.get(info.url + "/ready", timeout=5.0)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"the backend was not ready within {timeout:.0f}s: {last}")


def find_backend(data_dir: Path) -> BackendInfo | None:
    """The running backend of this data dir, if any."""
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text())
        info = BackendInfo(raw["url"], int(raw["pid"]))
    except (OSError, ValueError, KeyError):
        return None
    return info if info.alive() else None


def login_link(info: BackendInfo, token: str) -> str:
    """The dashboard URL with a one-time login code: opening it once signs the browser in.

    The code is in the fragment (`#login=…`), which browsers never send, so it reaches no
    access log; the page trades it for a session cookie, and it is worthless afterwards
    or once FLOWERBED_LOGIN_CODE_TTL_SECONDS have passed. No long-lived token in any URL.
    """
    response = httpx.post(f"{info.url}/auth/login-codes", headers={"Authorization": f"Bearer {token}"}, timeout=30.0)
    response.raise_for_status()
    return f"{info.url}/#login={response.json()['code']}"


def local_tracing_env(port: int, token: str) -> dict[str, str]:
    """OTEL_* for every local process: export spans to the backend's /v1/traces.

    Standard exporter variables only, so users can point them elsewhere (a real
    collector) by setting OTEL_EXPORTER_OTLP_ENDPOINT themselves.
    """
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return {}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{token}",
    }
