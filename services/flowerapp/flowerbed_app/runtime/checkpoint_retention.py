"""Which checkpoints a run keeps: the `keep-checkpoints` setting, parsed and applied.

A checkpoint is written every round; without pruning a long run fills the model store.
The policy is one string, spelled the same in the run config, the REST API and the
dashboard form: `all`, `best`, or `last-N` (the N newest). Whatever the policy, the
newest checkpoint (what a resumed run starts from) and the best one (highest
centralized accuracy; the newest of equals) are never deleted. Default `last-5`:
the five newest plus the best.

The ServerApp prunes after each checkpoint it writes, in the same thread, so nothing
else writes that run's directory meanwhile. A checkpoint's JSON metadata is its commit
marker (see `checkpoints`): it is deleted first, so a listing never shows a checkpoint
whose weights are gone; the weights follow.

Light on purpose (no torch, no NumPy): RunSettings validates the value in every process.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DEFAULT = "last-5"
# Shared with the API's field (its JSON schema `pattern`), so both accept the same spellings.
PATTERN = r"^(all|best|last-[1-9][0-9]{0,3})$"
_POLICY = re.compile(PATTERN)


def parse(policy: str) -> int | None:
    """How many of the newest to keep besides the best: None for all, 0 for `best`, N for `last-N`.

    ValueError (with the valid spellings) for anything else."""
    if not _POLICY.match(policy):
        raise ValueError(f"unknown policy {policy!r}; valid: all, best, last-N (N from 1 to 9999)")
    if policy == "all":
        return None
    return 0 if policy == "best" else int(policy.removeprefix("last-"))


def kept_rounds(checkpoints: Iterable[Mapping[str, Any]], policy: str) -> set[int]:
    """Rounds `policy` keeps among a run's checkpoints (metadata with `round` and `metrics.accuracy`)."""
    metas = list(checkpoints)
    rounds = sorted(int(m["round"]) for m in metas)
    newest = parse(policy)
    if newest is None or not rounds:
        return set(rounds)
    best = max(metas, key=lambda m: (_accuracy(m), int(m["round"])))
    return {*rounds[-max(newest, 1) :], int(best["round"])}


def _accuracy(meta: Mapping[str, Any]) -> float:
    value = (meta.get("metrics") or {}).get("accuracy")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else -math.inf


def prune(run_dir: Path, checkpoints: Iterable[Mapping[str, Any]], policy: str) -> list[str]:
    """Delete what `policy` does not keep, and weights left without metadata; returns deleted model ids.

    `checkpoints`: the run's complete checkpoints (`checkpoints.list_checkpoints`)."""
    metas = list(checkpoints)
    keep = kept_rounds(metas, policy)
    deleted = []
    for meta in metas:
        if int(meta["round"]) in keep:
            continue
        Path(meta["metadata_path"]).unlink(missing_ok=True)  # the commit marker first
        Path(meta["path"]).unlink(missing_ok=True)
        deleted.append(str(meta["model_id"]))
    for leftover in run_dir.glob("round-*.safetensors"):
        if not leftover.with_suffix(".json").exists():
            leftover.unlink(missing_ok=True)  # weights whose metadata never got written (a crash)
    return deleted
