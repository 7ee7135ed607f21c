"""What a client's reply must be before any strategy may aggregate it.

A SuperNode is another party's machine: its reply can carry NaN or infinite weights,
arrays of the wrong shape or dtype, arrays missing or added, bytes that are no array
at all, or an example count that would let one node outweigh all others. Flower's
strategies trust replies (one bad array fails the whole aggregation, or silently
poisons the model), so every check here runs on the raw reply, against the global
model the node was sent, and a failed check names the node's fault in one sentence.

Pure functions over Flower records and NumPy: no I/O, no strategy state. Reading an
array's values never unpickles and never copies (the .npy header is parsed, the values
are viewed where they lie), so a check costs one pass over the update.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord
from flwr.common.constant import SType

from flowerbed_app.strategy.fast_aggregation import npy_layout
from flowerbed_app.strategy.reply_contract import WEIGHT


class InvalidUpdate(ValueError):
    """A reply that must not be aggregated; the message is the node's failure reason."""


@dataclass(frozen=True)
class Layout:
    """Shape and dtype of one array of the global model."""

    shape: tuple[int, ...]
    dtype: np.dtype


def layout_of(record: ArrayRecord) -> dict[str, Layout]:
    """The layout of every array of a (trusted) global model."""
    layouts = {}
    for name, array in record.items():
        found = npy_layout(array.data)
        if found is None:
            values = array.numpy()
            layouts[name] = Layout(tuple(values.shape), values.dtype)
        else:
            layouts[name] = Layout(found[1], found[2])
    return layouts


def values_of(name: str, array: Array, expected: Layout) -> np.ndarray:
    """A flat read-only view of an untrusted array's values, checked against `expected`."""
    if array.stype != SType.NUMPY:
        raise InvalidUpdate(f"array {name!r} is serialized as {array.stype!r}, not as a NumPy array")
    data = array.data
    if data[:6] != b"\x93NUMPY":
        raise InvalidUpdate(f"array {name!r} is undecodable: its bytes are no .npy payload")
    try:
        found = npy_layout(data)
    except (ValueError, SyntaxError, TypeError) as exc:  # NumPy's header parser raises these for garbage
        raise InvalidUpdate(f"array {name!r} is not a readable .npy payload ({exc})") from None
    if found is None:
        raise InvalidUpdate(f"array {name!r} is not a C-ordered numeric .npy payload")
    offset, shape, dtype = found
    if shape != expected.shape:
        raise InvalidUpdate(f"array {name!r} has shape {shape}, the global model's has {expected.shape}")
    if dtype != expected.dtype:
        raise InvalidUpdate(f"array {name!r} is {dtype}, the global model's is {expected.dtype}")
    count = math.prod(shape)
    if (size := len(data) - offset) != count * dtype.itemsize:
        raise InvalidUpdate(f"array {name!r} holds {size} bytes of values, its header says {count * dtype.itemsize}")
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset)


def check_values(name: str, values: np.ndarray) -> None:
    """Every value finite (integer arrays always are)."""
    if not np.issubdtype(values.dtype, np.inexact) or not values.size:
        return
    # min and max see every NaN (they propagate it) and every infinity, without allocating a
    # mask: 2.7x faster than isfinite().all() on a ResNet-18 update. Count only on failure.
    if not (np.isfinite(values.min()) and np.isfinite(values.max())):
        bad = values.size - int(np.count_nonzero(np.isfinite(values)))
        raise InvalidUpdate(f"array {name!r} has {bad} non-finite values (NaN or infinite) of {values.size}")


def check_arrays(record: ArrayRecord, expected: Mapping[str, Layout]) -> None:
    """The update holds exactly the global model's arrays, each of its shape and dtype, all finite."""
    names = list(record.keys())
    missing = [n for n in expected if n not in record]
    extra = [n for n in names if n not in expected]
    if missing or extra:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {extra[:5]}" if extra else ""]
        raise InvalidUpdate(f"arrays differ from the global model's: {', '.join(p for p in parts if p)}")
    for name in names:
        check_values(name, values_of(name, record[name], expected[name]))


def check_metrics(metrics: MetricRecord, expected_keys: frozenset[str]) -> None:
    """Exactly the metric keys every valid reply has (Flower refuses to aggregate mixed keys), all finite."""
    keys = set(metrics.keys())
    if keys != expected_keys:
        missing, extra = sorted(expected_keys - keys), sorted(keys - expected_keys)
        raise InvalidUpdate(f"metrics differ from the expected ones: missing {missing}, unexpected {extra}")
    for key, value in metrics.items():
        numbers = value if isinstance(value, list) else [value]
        if any(not isinstance(v, int | float) or not math.isfinite(v) for v in numbers):
            raise InvalidUpdate(f"metric {key!r} is not a finite number: {value!r}")


def capped_weight(metrics: MetricRecord, cap: int) -> int:
    """The reply's example count, a whole number ≥ 1, at most `cap` (what its partition holds)."""
    value = metrics.get(WEIGHT)
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < 1 or value != int(value):  # type: ignore[operator, arg-type]
        raise InvalidUpdate(f"{WEIGHT} must be a whole number >= 1, got {value!r}")
    return min(int(value), cap)
