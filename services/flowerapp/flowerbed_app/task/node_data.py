"""A site's own data: the directory its SuperNode's node config names (`data-dir=…`).

Runs with `data-source = "node"` train on what each site holds instead of a slice of
Fashion-MNIST. Three layouts, each read by a well-kept library (no parser of ours):

- a table: one or more `.csv` (pandas) or `.parquet` (pyarrow) files with the same
  columns, the label in `label-column`, every other column a numeric feature;
- an image folder: one sub-folder per class holding PNG/JPEG files of any size (Pillow),
  converted to the run's channels and size;
- `.npz` files holding `x` (features or images) and `y` (labels).

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

from flowerbed_app.task.partition_cache import CACHE_VERSION, Partition, atomic_savez, cache_dir

DATA_DIR_KEY = "data-dir"
TABLE_SUFFIXES = (".csv", ".parquet")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("table", "images", "npz")


class NodeDataError(ValueError):
    """This node's data cannot be used; the message is the node's failure reason (and its fix)."""


@dataclass(frozen=True)
class RawData:
    """A node's examples as read, before the run's conversion.

    Tables: `x` float64 [N, F] in `columns` order. Images: `files` (one per example) and
    `x` empty until converted; `image_shape` is the most common (channels, height, width).
    npz: `x` as stored. `labels` are the class names as text, in example order."""

    format: str
    labels: np.ndarray
    x: np.ndarray
    columns: tuple[str, ...] = ()
    image_shape: tuple[int, ...] = ()
    files: tuple[str, ...] = ()


def data_dir_of(node_config: dict[str, object]) -> Path:
    """The node's data directory from its node config; missing is the node's failure."""
    raw = node_config.get(DATA_DIR_KEY)
    if not raw:
        raise NodeDataError(
            f"this SuperNode has no {DATA_DIR_KEY} in its node config — start it with "
            f"--node-config '{DATA_DIR_KEY}=\"/path/to/site/data\"' (flowerbed up --node-data DIR)"
        )
    return Path(str(raw)).expanduser()


def _listing(directory: Path) -> list[Path]:
    if not directory.exists():
        raise NodeDataError(f"data directory {directory} does not exist")
    if not directory.is_dir():
        raise NodeDataError(f"data directory {directory} is not a directory")
    try:
        files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise NodeDataError(f"data directory {directory} is unreadable: {exc}") from None
    if not files:
        raise NodeDataError(
            f"data directory {directory} is empty: put a table (.csv/.parquet), .npz files or class folders of images in it"
        )
    return files


def detect_format(directory: Path) -> str:
    """table | images | npz, from the files the directory holds; mixed layouts are refused."""
    files = _listing(directory)
    kinds = set()
    for path in files:
        suffix = path.suffix.lower()
        if suffix in TABLE_SUFFIXES and path.parent == directory:
            kinds.add("table")
        elif suffix == ".npz" and path.parent == directory:
            kinds.add("npz")
        elif suffix in IMAGE_SUFFIXES and path.parent.parent == directory:
            kinds.add("images")
        else:
            raise NodeDataError(
                f"{path.relative_to(directory)} in {directory} fits no layout: tables (.csv/.parquet) and .npz files "
                "lie in the directory itself, images (.png/.jpg) in one sub-folder per class"
            )
    if len(kinds) != 1:
        raise NodeDataError(f"data directory {directory} mixes layouts ({', '.join(sorted(kinds))}): keep one per site")
    return kinds.pop()


def read_raw(directory: Path, label_column: str) -> RawData:
    """Read a node's directory; any problem is a NodeDataError naming the file and the reason."""
    kind = detect_format(directory)
    if kind == "table":
        return _read_table(directory, label_column)
    if kind == "npz":
        return _read_npz(directory)
    return _read_image_folder(directory)


def _read_table(directory: Path, label_column: str) -> RawData:
    import pandas as pd  # lazy: only nodes with tables pay its import

    frames = []
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in TABLE_SUFFIXES):
        try:
            frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
        except Exception as exc:  # pandas raises many types for a bad file; all mean the same here
            raise NodeDataError(f"cannot read table {path.name}: {exc}") from None
        if label_column not in frame.columns:
            raise NodeDataError(
                f"table {path.name} has no label column {label_column!r} (columns: {', '.join(map(str, frame.columns))}) "
                "— rename it or set label_column"
            )
        if frames and set(frame.columns) != set(frames[0].columns):
            raise NodeDataError(f"tables {path.name} and the first table of {directory} have different columns")
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    features = sorted(str(c) for c in table.columns if c != label_column)
    if not features:
        raise NodeDataError(f"the table has only its label column {label_column!r}: no features to train on")
    if len(table) == 0:
        raise NodeDataError("the table has no rows")
    for column in features:
        if not pd.api.types.is_numeric_dtype(table[column]):
            raise NodeDataError(f"feature column {column!r} is not numeric (e.g. {table[column].iloc[0]!r})")
    values = table[features].to_numpy(dtype=np.float64)
    if bad := [c for c, ok in zip(features, np.isfinite(values).all(axis=0), strict=True) if not ok]:
        raise NodeDataError(f"feature columns with missing or infinite values: {', '.join(bad[:5])}")
    if table[label_column].isna().any():
        raise NodeDataError(f"label column {label_column!r} has missing values")
    return RawData("table", _label_names(table[label_column].to_numpy()), values, columns=tuple(features))


def _label_names(labels: np.ndarray) -> np.ndarray:
    """Labels as text (class names), so that 1 and 1.0 and "1" name the same class."""
    if labels.dtype.kind == "f" and np.all(np.mod(labels, 1) == 0):
        labels = labels.astype(np.int64)
    return np.asarray([str(v) for v in labels], dtype=object)


def _read_npz(directory: Path) -> RawData:
    xs, ys = [], []
    for path in sorted(directory.glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                if "x" not in data or "y" not in data:
                    raise NodeDataError(f"{path.name} must hold arrays 'x' and 'y', holds {', '.join(data.files)}")
                xs.append(np.asarray(data["x"]))
                ys.append(np.asarray(data["y"]))
        except NodeDataError:
            raise
        except Exception as exc:
            raise NodeDataError(f"cannot read {path.name}: {exc}") from None
        if len(xs[-1]) != len(ys[-1]):
            raise NodeDataError(f"{path.name}: x has {len(xs[-1])} examples, y has {len(ys[-1])}")
    if len({x.shape[1:] for x in xs}) != 1:
        raise NodeDataError("the .npz files hold examples of different shapes")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) == 0:
        raise NodeDataError("the .npz files hold no examples")
    if x.dtype != np.uint8:
        x = x.astype(np.float64)
        if x.ndim != 2:
            raise NodeDataError(f"x of shape {x.shape[1:]} per example: floats must be feature vectors, images uint8")
        if not np.isfinite(x).all():
            raise NodeDataError("x holds missing or infinite values")
        return RawData("npz", _label_names(y), x, columns=tuple(f"x{i}" for i in range(x.shape[1])))
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = np.moveaxis(x, -1, 1)  # channels-last → channels-first
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise NodeDataError(f"uint8 x must be images [N, H, W] or [N, C, H, W] with 1 or 3 channels, got {x.shape}")
    return RawData("npz", _label_names(y), x, image_shape=tuple(int(d) for d in x.shape[1:]))


def _read_image_folder(directory: Path) -> RawData:
    from PIL import Image  # lazy: only image sites pay its import

    files, labels, shapes = [], [], []
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(path) as image:
                    image.load()  # decodes: a truncated or corrupt file fails here, not mid-training
                    channels = 1 if image.mode in ("1", "L", "I", "I;16", "F") else 3
                    shapes.append((channels, image.height, image.width))
            except Exception as exc:
                raise NodeDataError(f"cannot read image {path.relative_to(directory)}: {exc}") from None
            files.append(str(path))
            labels.append(class_dir.name)
    if not files:
        raise NodeDataError(f"no images in the class folders of {directory}")
    values, counts = np.unique(np.asarray(shapes), axis=0, return_counts=True)
    common = tuple(int(v) for v in values[int(np.argmax(counts))])
    return RawData("images", np.asarray(labels, dtype=object), np.empty((0,)), image_shape=common, files=tuple(files))


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
    listing = [(str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in _listing(directory)]
    blob = json.dumps(
        [CACHE_VERSION, str(directory.resolve()), listing, label_column, conversion.__dict__, validation_fraction, seed],
        sort_keys=True,
        default=list,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
