"""Run a training on a real federation and collect what the ServerApp reported."""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowerbed.local.launcher import Federation
from flowerbed.paths import app_dir
from flowerbed.runs.run_follower import follow


@dataclass
class RunOutcome:
    flower_run_id: int
    flower_status: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


def run_training(
    federation: Federation,
    overrides: dict[str, Any],
    on_event: Any = None,
    timeout: float = 600.0,
) -> RunOutcome:
    """Start a run with these run-config overrides and follow it to its end."""
    control = federation.control()
    config = {
        "flowerbed-run-id": uuid.uuid4().hex[:12],
        "model-store": str(Path(federation.data_dir) / "models"),
        **overrides,
    }
    flower_run_id = control.start_run(app_dir(), config)
    outcome = RunOutcome(flower_run_id, "")

    def record(event: dict[str, Any]) -> None:
        outcome.events.append(event)
        if on_event:
            on_event(event)

    timer = threading.Timer(timeout, lambda: control.stop_run(flower_run_id))
    timer.start()
    try:
        outcome.flower_status = follow(control, flower_run_id, record)
    finally:
        timer.cancel()
    return outcome


def node_ids(federation: Federation, timeout: float = 30.0) -> dict[int, int]:
    """Partition id → Flower node id of each SuperNode (from its log; supernode-<i+1> serves partition i).

    The federation is ready once the SuperLink lists every node, which can be a moment before a SuperNode
    has flushed the line with its id: each log is polled until the line is there or `timeout` passes."""
    ids = {}
    deadline = time.monotonic() + timeout
    for process in federation.processes:
        if process.role != "supernode":
            continue
        while not (match := re.search(r"SuperNode ID: (\d+)", Path(process.log).read_text())):
            assert time.monotonic() < deadline, f"no node id in {process.log} after {timeout:.0f} s"
            time.sleep(0.1)
        ids[int(process.name.rsplit("-", 1)[1]) - 1] = int(match.group(1))
    return ids


def warm_caches(num_nodes: int, overrides: dict[str, Any]) -> None:
    """Build the partitions and split sizes a run with `overrides` needs, in this process:
    tests whose timing matters then do not wait for N ClientApps importing `datasets` at once."""
    from flowerbed_app.run_settings import RunSettings
    from flowerbed_app.task.partition_cache import PartitionSpec, load_partition, load_test_split, split_sizes

    settings = RunSettings.from_run_config({k: v for k, v in overrides.items() if k in RunSettings().to_run_config()})
    for partition in range(num_nodes):
        load_partition(PartitionSpec.of(settings, partition, num_nodes))
    split_sizes(PartitionSpec.of(settings, 0, num_nodes))
    load_test_split(settings.dataset)
