"""The model store: one safetensors file and one JSON metadata file per round.

Writes are atomic (temp file + rename, JSON last), so a crash mid-write leaves either
a complete checkpoint or none; the JSON is the commit marker. Loading never unpickles:
weights are safetensors and are verified against the sha256 in the metadata first.
Listing and verifying need no torch, so the backend can serve checkpoints without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

_ROUND_FILE = re.compile(r"^round-(\d{4,})\.json$")
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed or fails its sha256."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, file size limit, permissions); none was left behind."""


def default_store() -> Path:
    """Where checkpoints go when no store is configured for the run."""
    if env := os.environ.get("FLOWERBED_MODEL_STORE"):
        return Path(env)
    base = os.environ.get("FLOWERBED_DATA_DIR") or Path.home() / ".local" / "share" / "flowerbed"
    return Path(base) / "models"


def model_id(run_key: str, server_round: int) -> str:
    return f"{run_key}-round-{server_round:04d}"


def split_model_id(value: str) -> tuple[str, int]:
    """Inverse of model_id; rejects anything that could escape the store."""
    run_key, sep, number = value.rpartition("-round-")
    if not sep or not number.isdigit() or not _SAFE_KEY.match(run_key):
        raise CheckpointError(f"malformed model id {value!r}; expected '<run>-round-<NNNN>'")
    return run_key, int(number)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    store: Path,
    run_key: str,
    server_round: int,
    state_dict: Mapping[str, Any],
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """Write weights then metadata atomically; returns the metadata written.

    On any failure (a full disk, a file size limit) nothing of this checkpoint stays
    behind, and CheckpointWriteError says what happened in words ("no space left on
    device writing checkpoint round 2 …")."""
    from safetensors.torch import save  # lazy: listing needs no torch

    if not _SAFE_KEY.match(run_key):
        raise CheckpointError(f"unsafe run key {run_key!r}")
    directory = store / run_key
    stem = f"round-{server_round:04d}"
    weights = directory / f"{stem}.safetensors"
    meta_path = directory / f"{stem}.json"
    # Serialized in memory, written with Python's I/O: a failed write is an OSError with its
    # errno (safetensors' own writer reports it as an opaque string), and the sha256 needs no re-read.
    payload = save({k: v.detach().contiguous().cpu() for k, v in state_dict.items()})
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write_bytes(weights, payload)
        meta = {
            **metadata,
            "model_id": model_id(run_key, server_round),
            "run_key": run_key,
            "round": server_round,
            "file": weights.name,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
            "created_at": time.time(),
        }
        _atomic_write_bytes(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
    except OSError as exc:
        weights.unlink(missing_ok=True)  # weights without their metadata are no checkpoint
        reason = (exc.strerror or str(exc)).lower()
        raise CheckpointWriteError(f"{reason} writing checkpoint round {server_round} to {directory}") from exc
    return {**meta, "path": str(weights), "metadata_path": str(meta_path)}


def list_checkpoints(store: Path, run_key: str | None = None) -> Iterator[dict[str, Any]]:
    """Metadata of every complete checkpoint (optionally of one run), oldest round first."""
    runs = [store / run_key] if run_key else sorted(_entries(store))
    for directory in runs:
        for meta_path in sorted(_entries(directory)):  # a run pruned or deleted meanwhile lists nothing
            if _ROUND_FILE.match(meta_path.name):
                try:
                    yield read_metadata(meta_path)
                except CheckpointError:
                    continue  # half-written or foreign file: not a checkpoint


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_metadata(meta_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"unreadable checkpoint metadata {meta_path.name}: {exc}") from exc
    meta["path"] = str(meta_path.with_name(meta.get("file", "")))
    meta["metadata_path"] = str(meta_path)
    return meta


def find_checkpoint(store: Path, value: str) -> dict[str, Any]:
    """Metadata for a model id or a path to a checkpoint's JSON or weights file."""
    if value.endswith((".json", ".safetensors")) and os.sep in value:
        meta_path = Path(value).with_suffix(".json")
    else:
        run_key, server_round = split_model_id(value)
        meta_path = store / run_key / f"round-{server_round:04d}.json"
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint {value!r} in the model store")
    return read_metadata(meta_path)


def verify(meta: Mapping[str, Any]) -> Path:
    """Return the weights path if its sha256 matches the metadata, else raise."""
    path = Path(meta["path"])
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path.name} is missing")
    actual = sha256_file(path)
    if actual != meta.get("sha256"):
        raise CheckpointError(f"checkpoint {meta.get('model_id')} fails its sha256 (file changed or corrupt)")
    return path


def load_state_dict(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Verified tensors of a checkpoint (safetensors: no code runs on load)."""
    from safetensors.torch import load_file

    return load_file(str(verify(meta)))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file + rename: readers see the old file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
