"""A site's own data: the directory its SuperNode's node config names (`data-dir=…`).

Runs with `data-source = "node"` train on what each site holds instead of a slice of
Fashion-MNIST. node_files.py reads the directory's layout (a table, class folders of
images, or `.npz` files); this module turns what it read into the run's input.

Each node holds out a fixed, seeded validation share of its own examples. What the
ClientApp trains on is the data converted for the run (class indices in the run's
class order, tables standardised with the federation's statistics, images at the run's
input shape), cached as .npz keyed by the directory's listing and the conversion, so a
short-lived ClientApp process reads it in milliseconds after the first.

Nothing here leaves the node except through `data_description` (counts, never rows).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowerbed_app.task.node_files import NodeDataError, RawData, listing, read_raw
from flowerbed_app.task.partition_cache import CACHE_VERSION, Partition, atomic_savez, cache_dir

DATA_DIR_KEY = "data-dir"


def data_dir_of(node_config: dict[str, object]) -> Path:
    """The node's data directory from its node config; missing is the node's failure."""
    raw = node_config.get(DATA_DIR_KEY)
    if not raw:
        raise NodeDataError(
            f"this SuperNode has no {DATA_DIR_KEY} in its node config — start it with "
            f"--node-config '{DATA_DIR_KEY}=\"/path/to/site/data\"' (flowerbed up --node-data DIR)"
        )
    return Path(str(raw)).expanduser()


def validation_split(count: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): a fixed, seeded share; at least one training example."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = min(round(count * validation_fraction), count - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass(frozen=True)
class Conversion:
    """How a run turns every node's raw data into model input (agreed on by the ServerApp)."""

    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()


def load_for_run(directory: Path, label_column: str, conversion: Conversion, validation_fraction: float, seed: int) -> Partition:
    """The node's train/validation arrays converted for the run, from the cache when it is current."""
    key = _cache_key(directory, label_column, conversion, validation_fraction, seed)
    path = cache_dir() / "node-data" / f"{key}.npz"
    if not path.is_file():
        raw = read_raw(directory, label_column)
        x, y = convert(raw, conversion)
        train, val = validation_split(len(y), validation_fraction, seed)
        atomic_savez(path, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val])
    with np.load(path) as data:
        return Partition(data["x_train"], data["y_train"], data["x_val"], data["y_val"])


def convert(raw: RawData, conversion: Conversion) -> tuple[np.ndarray, np.ndarray]:
    """(model input, class indices in the run's order)."""
    index = {name: i for i, name in enumerate(conversion.classes)}
    unknown = sorted(set(raw.labels) - set(index))
    if unknown:
        raise NodeDataError(f"classes {', '.join(unknown[:5])} are not among the run's ({', '.join(conversion.classes)})")
    y = np.asarray([index[name] for name in raw.labels], dtype=np.int64)
    if raw.columns and raw.x.ndim == 2:
        return standardise(raw.x, conversion.feature_mean, conversion.feature_std), y
    if raw.format == "images":
        return _images_at(raw.files, conversion.input_shape), y
    return _resized(raw.x, conversion.input_shape), y


def standardise(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Feature rows [N, F] with the federation's statistics, as the model trains on them (and predicts)."""
    centred = np.asarray(x, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    return (centred / np.asarray(std, dtype=np.float64)).astype(np.float32)


def _images_at(files: Sequence[str], shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image

    channels, height, width = shape
    out = np.empty((len(files), channels, height, width), dtype=np.uint8)
    for i, name in enumerate(files):
        with Image.open(name) as image:
            converted = image.convert("L" if channels == 1 else "RGB")
            if converted.size != (width, height):
                converted = converted.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(converted, dtype=np.uint8)
        out[i] = pixels[None] if channels == 1 else np.moveaxis(pixels, -1, 0)
    return out


def _resized(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 [N, C, H, W] arrays to the run's shape (channels by averaging or repeating, size by Pillow)."""
    from PIL import Image

    channels, height, width = shape
    if x.shape[1] != channels:
        x = x.mean(axis=1, keepdims=True).astype(np.uint8) if channels == 1 else np.repeat(x, 3, axis=1)
    if x.shape[2:] == (height, width):
        return np.ascontiguousarray(x)
    out = np.empty((len(x), channels, height, width), dtype=np.uint8)
    for i, image in enumerate(x):
        for c in range(channels):
            out[i, c] = np.asarray(Image.fromarray(image[c]).resize((width, height), Image.Resampling.BILINEAR))
    return out


def _cache_key(directory: Path, label_column: str, conversion: Conversion, validation_fraction: float, seed: int) -> str:
    """Changes whenever a file of the directory changes (name, size, mtime) or the conversion does."""
    stats = [(str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in listing(directory)]
    blob = json.dumps(
        [CACHE_VERSION, str(directory.resolve()), stats, label_column, conversion.__dict__, validation_fraction, seed],
        sort_keys=True,
        default=list,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
