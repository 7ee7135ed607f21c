"""A ServerApp that prints its `run_finished` event in two writes, with a pause in between.

Flower uploads every write to stdout as its own log entry, so the backend reads the first
half of the line in one chunk and the rest in a later one: the test kills the backend in
between. The second half is written once the test creates `<model-store>/release`.
"""

from __future__ import annotations

import time
from pathlib import Path

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from flowerbed_app.runtime.progress_events import PREFIX, to_json

app = ServerApp()
client = ClientApp()  # Flower wants both components; no node is ever asked to do anything


@app.main()
def main(grid: Grid, context: Context) -> None:
    base = {"v": 1, "run_id": str(context.run_config["flowerbed-run-id"]), "flower_run_id": context.run_id}
    print(PREFIX + to_json({**base, "event": "run_started", "seq": 1, "ts": time.time()}), flush=True)
    finished = {**base, "event": "run_finished", "seq": 2, "ts": time.time(), "status": "completed"}
    line = PREFIX + to_json({**finished, "accuracy": 0.5, "loss": 1.25, "rounds": 0, "seconds": 1.0})
    half = len(line) // 2
    print(line[:half], end="", flush=True)
    release = Path(str(context.run_config["model-store"])) / "release"
    deadline = time.monotonic() + 300
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    print(line[half:], flush=True)
