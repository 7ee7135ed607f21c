"""Per-client partitions of the training set, computed once and cached as arrays.

A ClientApp process lives for one message, so anything it computes is lost. The
first process to need a partition builds it with flwr-datasets' partitioners
(imported lazily: they pull in `datasets`, pandas and pyarrow, ~2 s of imports)
and writes it atomically; every later process maps it (`np.load(mmap_mode=...)`)
in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from flowerbed_app.task.fashion_mnist import load_split

if TYPE_CHECKING:
    from flowerbed_app.run_settings import RunSettings

CACHE_VERSION = 1


@dataclass(frozen=True)
class PartitionSpec:
    source: str
    partitioner: str
    num_partitions: int
    partition_id: int
    alpha: float
    seed: int
    validation_fraction: float

    @classmethod
    def of(cls, settings: RunSettings, partition_id: int, num_partitions: int) -> PartitionSpec:
        """Which slice of the data node `partition_id` of `num_partitions` trains on in this run."""
        return cls(
            source=settings.dataset,
            partitioner=settings.partitioner,
            num_partitions=num_partitions,
            partition_id=partition_id,
            alpha=settings.alpha,
            seed=settings.seed,
            validation_fraction=settings.validation_fraction,
        )

    def cache_key(self) -> str:
        blob = json.dumps({"v": CACHE_VERSION, **self.__dict__}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Partition:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


_PARTITION_ARRAYS = tuple(f.name for f in fields(Partition))


def cache_dir() -> Path:
    return Path(os.environ.get("FLOWERBED_CACHE_DIR") or Path.home() / ".cache" / "flowerbed")


def load_partition(spec: PartitionSpec) -> Partition:
    """Load one client's train/validation arrays, building the cache on a miss."""
    if not 0 <= spec.partition_id < spec.num_partitions:
        raise ValueError(f"partition-id {spec.partition_id} outside 0..{spec.num_partitions - 1}")
    directory = cache_dir() / "partitions" / spec.cache_key()
    if not directory.is_dir():
        _save_mapped(directory, _build_partition(spec))
        # The same partition in the single-file layout of earlier versions: never read again.
        directory.with_name(f"{directory.name}.npz").unlink(missing_ok=True)
    return Partition(*(np.load(directory / f"{name}.npy", mmap_mode="c") for name in _PARTITION_ARRAYS))


def _save_mapped(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """One .npy per array, in a directory made whole and then renamed into place.

    Loaded memory-mapped (copy-on-write): a ClientApp starts training before it has read the
    partition (a quick run uses its first examples only; reading 24 MB took ~90 ms of a warm
    task's ~0.5 s start), and nodes on one machine share the pages. Whoever renames first
    wins; a loser's copy is the same arrays, dropped."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, suffix=".tmp"))
    try:
        for name in _PARTITION_ARRAYS:
            np.save(tmp / f"{name}.npy", arrays[name])
        os.rename(tmp, directory)
    except OSError:
        if not directory.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_test_split(source: str, max_examples: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The global test split for centralized evaluation, cached like partitions; with
    `max_examples`, a sample of that many drawn with `seed` (in the split's order), so a quick
    run's every round is measured on the same examples."""
    key = hashlib.sha256(f"{CACHE_VERSION}:{source}".encode()).hexdigest()[:24]
    path = cache_dir() / "test" / f"{key}.npz"
    if not path.is_file():
        x, y = load_split(source, "test")
        atomic_savez(path, x=x, y=y)
    with np.load(path) as data:
        x, y = data["x"], data["y"]
    if 0 < max_examples < len(y):
        keep = np.sort(np.random.default_rng(seed).choice(len(y), max_examples, replace=False))
        x, y = x[keep], y[keep]
    return x, y


def partition_indices(labels: np.ndarray, spec: PartitionSpec) -> np.ndarray:
    """Indices of the training set that belong to this partition (flwr-datasets)."""
    partitioner = _partitioner(labels, spec)
    return np.asarray(partitioner.load_partition(spec.partition_id)["idx"], dtype=np.int64)


def split_sizes(spec: PartitionSpec) -> list[tuple[int, int]]:
    """(training, validation) example counts of every partition of `spec`'s split (its
    partition_id is ignored): the ServerApp bounds what each node may claim to have
    trained on without ever holding the partitions themselves."""
    return [(int(train), int(val)) for train, val in _split_summary(spec)["sizes"]]


def split_classes(spec: PartitionSpec) -> list[list[int]]:
    """Examples per class (label i at index i) of every partition of `spec`'s split, training
    and validation together: what the run view shows each node of a partitioned run holding."""
    return [[int(count) for count in row] for row in _split_summary(spec)["classes"]]


def _split_summary(spec: PartitionSpec) -> dict[str, Any]:
    """Sizes and class counts of every partition, from one partitioning, cached on disk."""
    key = replace(spec, partition_id=-1).cache_key()
    path = cache_dir() / "split-summary" / f"{key}.json"
    try:
        summary = json.loads(path.read_text())
        if len(summary["sizes"]) == len(summary["classes"]) == spec.num_partitions:
            return summary
    except (OSError, ValueError, TypeError, KeyError):
        pass  # not cached yet (or unreadable): compute it
    _, labels = load_split(spec.source, "train")
    partitioner = _partitioner(labels, spec)
    parts = [np.asarray(partitioner.load_partition(i)["label"], dtype=np.int64) for i in range(spec.num_partitions)]
    num_classes = int(labels.max()) + 1
    summary = {
        "sizes": [_split_counts(len(part), spec.validation_fraction) for part in parts],
        "classes": [np.bincount(part, minlength=num_classes).tolist() for part in parts],
    }
    _atomic_write(path, lambda f: f.write(json.dumps(summary).encode()))
    return summary


def _partitioner(labels: np.ndarray, spec: PartitionSpec) -> Any:
    from datasets import Dataset  # lazy: cache miss only
    from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner

    if spec.partitioner == "iid":
        partitioner = IidPartitioner(num_partitions=spec.num_partitions)
    elif spec.partitioner == "dirichlet":
        partitioner = DirichletPartitioner(
            num_partitions=spec.num_partitions,
            partition_by="label",
            alpha=spec.alpha,
            seed=spec.seed,
            min_partition_size=0,
        )
    else:
        raise ValueError(f"unknown partitioner {spec.partitioner!r}; valid: iid, dirichlet")
    partitioner.dataset = Dataset.from_dict({"idx": np.arange(len(labels)), "label": labels})
    return partitioner


def _split_counts(size: int, validation_fraction: float) -> tuple[int, int]:
    """(training, validation) examples of a partition of `size`: the first round(size·f) validate."""
    n_val = round(size * validation_fraction)
    return size - n_val, n_val


def _build_partition(spec: PartitionSpec) -> dict[str, np.ndarray]:
    x, y = load_split(spec.source, "train")
    idx = partition_indices(y, spec)
    rng = np.random.default_rng(spec.seed + spec.partition_id)
    idx = idx[rng.permutation(len(idx))]
    _, n_val = _split_counts(len(idx), spec.validation_fraction)
    val, train = idx[:n_val], idx[n_val:]
    return {"x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val]}


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write then rename, so concurrent ClientApps never read a half-written file."""
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def _atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
