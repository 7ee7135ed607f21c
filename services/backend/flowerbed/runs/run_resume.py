"""Resume: what it takes to continue a failed or stopped run from its last checkpoint.

A resumed run is a new run, linked to the one it continues (`resumed_from`), that starts
from that run's newest checkpoint (`from_checkpoint`, the existing resume path of the
ServerApp) and runs the rounds left up to the original last round. The original keeps
its status and error: terminal states are final, so its history, its SSE clients and the
metrics already counted stay true. Its checkpoints stay where they are; the new run's
rounds continue the numbering (checkpoint of round 2 → rounds 3, 4, … of the new run).

What a checkpoint does not hold starts afresh: a server-side optimizer's state (FedAdam,
FedYogi moments; FedAvgM momentum), performance-selection scores, and the privacy
accountant of a DP run, whose ε then counts from the resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flowerbed.db.tables import RESUMABLE_STATUSES, Run
from flowerbed.runs.run_config import TrainingConfig
from flowerbed_app.runtime import checkpoints


class NotResumable(RuntimeError):
    """The run cannot be resumed (now); the message says why and what to do."""


def latest_checkpoint(model_store: Path, run_id: str) -> dict[str, Any] | None:
    """Metadata of the run's newest checkpoint whose weights are still there."""
    found = [m for m in checkpoints.list_checkpoints(model_store, run_id) if Path(m["path"]).is_file()]
    return max(found, key=lambda m: int(m["round"]), default=None)


def first_round_of(run: Run) -> int:
    """The round a run started after: its checkpoint's round, or 0."""
    if not run.from_checkpoint:
        return 0
    try:
        return checkpoints.split_model_id(run.from_checkpoint)[1]
    except checkpoints.CheckpointError:
        return 0


def resume_config(run: Run, model_store: Path, resumed_by: list[Run]) -> TrainingConfig:
    """The configuration of the run that continues `run`; raises NotResumable."""
    if run.status not in RESUMABLE_STATUSES:
        raise NotResumable(f"run {run.run_id} is {run.status}: only failed or stopped runs can be resumed")
    if resumed_by:
        raise NotResumable(f"run {run.run_id} is already continued by run {resumed_by[-1].run_id}; resume that one instead")
    last_round = first_round_of(run) + run.num_rounds
    latest = latest_checkpoint(model_store, run.run_id)
    done = int(latest["round"]) if latest else first_round_of(run)
    if done >= last_round:
        raise NotResumable(
            f"run {run.run_id} already has the checkpoint of its last round ({last_round}): nothing is left to train"
        )
    try:
        return TrainingConfig.model_validate(
            {
                **run.config,
                "num_rounds": last_round - done,
                "from_checkpoint": latest["model_id"] if latest else run.from_checkpoint,
            }
        )
    except ValidationError as exc:
        raise NotResumable(f"run {run.run_id}'s stored configuration is no longer valid: {exc.errors()[0]['msg']}") from None
