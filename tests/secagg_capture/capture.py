"""Test-only recorders for SecAgg+ tests (see sitecustomize.py).

Server side: every reply the ServerApp's SecAgg+ workflow receives in the masked-vector
stage, as the server holds it (`masked-r<round>-n<node>.npz`). Client side: the model
each ClientApp trained, before anything (mod, masking) touches it
(`clear-r<round>-n<node>.npz`). Files land in $FLOWERBED_TEST_CAPTURE_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

CAPTURE_ENV = "FLOWERBED_TEST_CAPTURE_DIR"
HERE = Path(__file__).resolve().parent


def capture_env(directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, CAPTURE_ENV: str(directory)}


def _directory() -> Path:
    return Path(os.environ[CAPTURE_ENV])


class _RecordingGrid:
    """The workflow's grid, recording the replies of one send_and_receive."""

    def __init__(self, grid: Any, server_round: int) -> None:
        self._grid = grid
        self.server_round = server_round

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        from flwr.common import bytes_to_ndarray

        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.has_error():
                continue
            masked = reply.content.config_records["secaggplus_configs"]["masked_params"]
            arrays = [bytes_to_ndarray(b) for b in masked]  # type: ignore[union-attr]
            np.savez(_directory() / f"masked-r{self.server_round}-n{reply.metadata.src_node_id}.npz", *arrays)
        return replies


def install_server(module: ModuleType) -> None:
    workflow = module._TracedSecAggPlus
    original = workflow.collect_masked_vectors_stage

    def recording(self: Any, grid: Any, context: Any, state: Any) -> bool:
        server_round = int(context.state.config_records["config"]["current_round"])
        return original(self, _RecordingGrid(grid, server_round), context, state)

    workflow.collect_masked_vectors_stage = recording


def install_client(module: ModuleType) -> None:
    original = module._train

    def recording(msg: Any, context: Any, settings: Any, server_round: int, *args: Any) -> Any:
        reply = original(msg, context, settings, server_round, *args)
        arrays = [a.numpy() for a in reply.content["arrays"].values()]
        np.savez(_directory() / f"clear-r{server_round}-n{context.node_id}.npz", *arrays)
        return reply

    module._train = recording
