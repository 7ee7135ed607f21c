"""Fashion-MNIST as numpy arrays, from a local IDX directory or the Hugging Face hub.

Only called on a partition-cache miss: the hub path imports `datasets` (seconds of
import time), so it must never run in the hot path of a short-lived ClientApp.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
SHAPE = (1, 28, 28)  # channels, height, width of every image
HUB_ID = "zalando-datasets/fashion_mnist"
# Label i of the dataset is CLASS_NAMES[i] (Xiao et al., 2017); predictions and exports name classes by it.
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetMissingError(FileNotFoundError):
    """The configured dataset source cannot be read; the message says how to fix it."""


def is_local_source(source: str) -> bool:
    """A path (absolute, relative or ~) is local; `owner/name` is a hub id."""
    return source.startswith(("/", ".", "~")) or os.path.isdir(source)


def check_source(source: str) -> None:
    """Fail fast, before a run starts, when a local source has no IDX files."""
    if is_local_source(source):
        _idx_paths(Path(source).expanduser(), "train")
        _idx_paths(Path(source).expanduser(), "test")


def load_split(source: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels int64 [N]) for 'train' or 'test'."""
    if is_local_source(source):
        images_path, labels_path = _idx_paths(Path(source).expanduser(), split)
        return _read_idx(images_path), _read_idx(labels_path).astype(np.int64)
    return _load_from_hub(source, split)


def _idx_paths(directory: Path, split: str) -> tuple[Path, Path]:
    paths = []
    for stem in _FILES[split]:
        candidates = [directory / f"{stem}.gz", directory / stem]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DatasetMissingError(
                f"no Fashion-MNIST at {directory} (missing {stem}[.gz]) — "
                "`apt-get install dataset-fashion-mnist`, or set dataset to "
                f"'{HUB_ID}' to download it from the Hugging Face hub"
            )
        paths.append(found)
    return paths[0], paths[1]


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (LeCun's format: magic, dims as big-endian uint32, data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def _load_from_hub(hub_id: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from datasets import load_dataset  # heavy: only on a cache miss
    except ImportError as exc:  # pragma: no cover - datasets ships with flwr-datasets
        raise DatasetMissingError("the hub source needs `pip install datasets`") from exc
    try:
        ds = load_dataset(hub_id, split=split)
    except Exception as exc:  # network, auth, unknown id: all end the same way for users
        raise DatasetMissingError(
            f"could not load {hub_id!r} from the Hugging Face hub ({exc}); without internet "
            f"use a local IDX directory such as {DEFAULT_DIR}"
        ) from exc
    images = np.stack([np.asarray(img, dtype=np.uint8) for img in ds["image"]])
    return images, np.asarray(ds["label"], dtype=np.int64)
