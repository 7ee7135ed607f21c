"""Reading a node's data directory as it lies: which layout it is, and its examples before any conversion.

Three layouts, each read by a well-kept library (no parser of ours):

- a table: one or more `.csv` (pandas) or `.parquet` (pyarrow) files with the same
  columns, the label in `label-column`, every other column a numeric feature;
- an image folder: one sub-folder per class holding PNG/JPEG files of any size (Pillow),
  converted to the run's channels and size;
- `.npz` files holding `x` (features or images) and `y` (labels).

Every problem is a NodeDataError naming the file and the reason,
which becomes this node's failure, never the run's. Converting for a run is node_data.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def listing(directory: Path) -> list[Path]:
    """The directory's files (hidden ones left out); a missing, unreadable or empty directory is the node's failure."""
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
    files = listing(directory)
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
