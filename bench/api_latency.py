"""API latency under load: GET /training/{id} at 50 and 200 connections, plus SSE.

A real `flowerbed serve` process on SQLite holds one 10-round, 10-client run whose
history was written through the backend's own ingestion path (ServerApp event lines
→ RunHistory), so the read path is exactly production's. wrk (Debian's) drives the
load from a second process; GET /health in the same run is the floor to compare
against. 100 SSE subscribers replay the run's stream while wrk runs. Goal: p99 ≤ 50 ms.

    .venv/bin/python bench/api_latency.py [--seconds 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import httpx
from _harness import backend, emit

from flowerbed.db.engine import make_engine, migrate, session_factory
from flowerbed.db.run_history import RunHistory
from flowerbed_app.runtime.progress_events import EventEmitter

TOKEN = secrets.token_hex(16)  # the backend refuses tokens shorter than 24 characters


def seed(data_dir: Path, rounds: int = 10, clients: int = 10) -> str:
    """Write one finished run through the real ingestion path."""
    engine = make_engine(f"sqlite:///{data_dir / 'flowerbed.db'}")
    migrate(engine)
    history = RunHistory(session_factory(engine))
    run_id = "bench" + "0" * 27
    history.create_run(run_id, {"model": "cnn", "num_rounds": rounds}, rounds, None)
    history.set_flower_run_id(run_id, 12345678901234567890)
    emitter = EventEmitter(run_id, 12345678901234567890)
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        emitter.emit("run_started", config={"model": "cnn"})
        for r in range(1, rounds + 1):
            emitter.emit("round_started", round=r, selected=list(range(clients)))
            emitter.emit(
                "round_finished",
                round=r,
                accuracy=0.8 + r / 100,
                loss=0.5 - r / 100,
                clients=[
                    {"node_id": 10**18 + c, "partition_id": c, "num_examples": 5400, "train_loss": 0.4, "val_accuracy": 0.8}
                    for c in range(clients)
                ],
                failures=[],
                seconds=20.0,
                timeline={"train_replies": 15.0},
            )
        emitter.emit("run_finished", accuracy=0.9, loss=0.3)
    history.ingest_log_chunk(run_id, buffer.getvalue(), time.time())
    history.set_status(run_id, "completed", accuracy=0.9, loss=0.3)
    engine.dispose()
    return run_id


def wrk(url: str, connections: int, seconds: int, script: Path | None = None) -> dict[str, float]:
    """wrk's latency percentiles; `script` is a Lua file shaping the request (method, body, headers)."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", *(["-s", str(script)] if script else []), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50_ms": ms("50%"), "p99_ms": ms("99%"), "rps": rps, "non_2xx": int(errors.group(1)) if errors else 0}


async def sse_subscribers(base: str, run_id: str, count: int) -> list[float]:
    async def one(client: httpx.AsyncClient) -> float:
        started = time.perf_counter()
        async with client.stream("GET", f"{base}/training/{run_id}/events") as response:
            async for _ in response.aiter_lines():
                pass
        return time.perf_counter() - started

    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(count))))


def main() -> None:
    parser = argparse.ArgumentParser(description="API latency")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `apt-get install wrk` (make setup installs it as root)")

    with tempfile.TemporaryDirectory(prefix="flowerbed-api-bench-") as tmp:
        data_dir = Path(tmp)
        run_id = seed(data_dir)
        with backend(data_dir, TOKEN) as base:
            detail = f"{base}/training/{run_id}"
            assert httpx.get(detail).json()["rounds_completed"] == 10
            results = {}
            for connections in (50, 200):
                results[f"health_c{connections}"] = wrk(f"{base}/health", connections, args.seconds)
                results[f"detail_c{connections}"] = wrk(detail, connections, args.seconds)
            load = subprocess.Popen(["wrk", "-t1", "-c50", f"-d{args.seconds}s", detail], stdout=subprocess.DEVNULL)
            streams = asyncio.run(sse_subscribers(base, run_id, args.subscribers))
            load.wait()

    table = [[name, f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['rps']:.0f}", r["non_2xx"]] for name, r in results.items()]
    sse = {"p50_s": statistics.median(streams), "p99_s": sorted(streams)[int(0.99 * (len(streams) - 1))], "count": len(streams)}
    table.append(
        [
            f"{len(streams)} SSE replays (10 rounds) under c50 load",
            f"{sse['p50_s'] * 1000:.0f}",
            f"{sse['p99_s'] * 1000:.0f}",
            "",
            "",
        ]
    )
    emit(
        table,
        ["endpoint @ connections", "p50 ms", "p99 ms", "req/s", "non-2xx"],
        {"results": results, "sse": sse, "goal_p99_ms": 50},
        args.json,
    )


if __name__ == "__main__":
    main()
