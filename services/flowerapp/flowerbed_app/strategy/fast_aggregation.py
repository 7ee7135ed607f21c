"""Flower's weighted average of ArrayRecords at memory speed, with Flower's exact result.

Flower's `aggregate_arrayrecords` (used by FedAvg, FedProx, FedAvgM, FedAdam, FedYogi,
FedAdagrad) deserializes every client's array with `np.load` (a full copy), multiplies
it into a fresh temporary and adds that to the accumulator: about five memory passes
per byte of update. Measured here it reaches 0.2 of a plain memcpy's bandwidth.

This module computes the same float operations in the same order — `acc = x0 * w0`,
then `acc += xi * wi` per reply, in the accumulator's dtype — so the result is
bit-identical, but it reads each update where it lies (a zero-copy view of the
`.npy` bytes Flower's `Array` holds) and works block by block so the accumulator and
the product stay in cache. No library does this for Flower's records, hence by hand.

`replacing_flowers_aggregation()` swaps it in for Flower's function inside Flower's
strategy modules for the duration of one `aggregate_train` call: the strategies stay
Flower's (we wrap, never fork), only the arithmetic underneath is ours. Anything it
does not handle exactly (arrays not in NumPy serialization, keys that differ between
replies) goes to Flower's own function.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import io
from collections.abc import Iterator
from typing import cast

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.common.constant import SType
from flwr.serverapp.strategy import fedavg as flower_fedavg
from flwr.serverapp.strategy import multikrum as flower_multikrum
from flwr.serverapp.strategy import strategy_utils

# Elements per block: the accumulator block and the product block (512 KiB each in
# float32) stay in a core's L2 cache; measured best of 16K…1M elements with both
# cores working (bench/aggregation.py).
BLOCK = 1 << 17

flowers_aggregate_arrayrecords = strategy_utils.aggregate_arrayrecords
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fast-aggregation")


@functools.lru_cache(maxsize=4096)
def _parse_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of a .npy header; cached: a model's headers repeat every round."""
    buffer = io.BytesIO(header)
    major, _ = np.lib.format.read_magic(buffer)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    return read(buffer)


def npy_layout(data: bytes) -> tuple[int, tuple[int, ...], np.dtype] | None:
    """(offset of the values, shape, dtype) of C-ordered .npy bytes, read from the header alone.

    None for what the block loop does not handle exactly: Fortran order, object dtypes,
    .npy format versions other than 1 and 2. Raises ValueError for a malformed header.
    """
    # v1 and v2 only: v3 headers are UTF-8 (v2's reader assumes latin-1); np.save writes v1.
    if data[:6] != b"\x93NUMPY" or len(data) < 12 or data[6] not in (1, 2):
        return None
    # .npy v1 stores the header length in 2 bytes at offset 8, v2 in 4 bytes.
    length_end = 10 if data[6] == 1 else 12
    offset = length_end + int.from_bytes(data[8:length_end], "little")
    shape, fortran_order, dtype = _parse_header(bytes(data[:offset]))
    if fortran_order or dtype.hasobject:
        return None
    return offset, tuple(shape), dtype


def flat_view(array: Array) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """A read-only 1-D view of an Array's values and their shape, without copying (no pickle).

    None for what the block loop does not handle exactly (see `npy_layout`).
    """
    data = array.data
    layout = npy_layout(data)
    if layout is None:
        return None
    offset, shape, dtype = layout
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset), shape


def _npy_buffer(shape: tuple[int, ...], dtype: np.dtype) -> tuple[bytearray, np.ndarray]:
    """A .npy file's bytes, header written, and a writable flat view of its values."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    count = int(np.prod(shape, dtype=np.int64))
    buffer = bytearray(header.tell() + count * dtype.itemsize)
    buffer[: header.tell()] = header.getvalue()
    return buffer, np.frombuffer(buffer, dtype=dtype, count=count, offset=header.tell())


def _weights(records: list[RecordDict], weighting_metric_name: str) -> list[float]:
    """Normalized weights exactly as Flower computes them (w / sum(w), Python floats)."""
    raw = [float(next(iter(r.metric_records.values()))[weighting_metric_name]) for r in records]  # type: ignore[arg-type]
    total = sum(raw)
    return [w / total for w in raw]


def _weighted_sum(flats: list[np.ndarray], weights: list[float], out: np.ndarray, start: int, stop: int) -> None:
    """out[start:stop] = sum_i flats[i] * weights[i], in the dtype and operation order of Flower's loop."""
    scalars = [out.dtype.type(w) for w in weights]
    product = np.empty(min(BLOCK, stop - start), dtype=out.dtype)
    for begin in range(start, stop, BLOCK):
        end = min(begin + BLOCK, stop)
        acc, tmp = out[begin:end], product[: end - begin]
        np.multiply(flats[0][begin:end], scalars[0], out=acc)
        for flat, scalar in zip(flats[1:], scalars[1:], strict=True):
            np.multiply(flat[begin:end], scalar, out=tmp)
            np.add(acc, tmp, out=acc)


def _aggregated_array(flats: list[np.ndarray], shape: tuple[int, ...], weights: list[float]) -> Array:
    # Flower computes `value.numpy() * weight` with a Python float: NumPy's weak-scalar
    # promotion keeps float dtypes and turns integer ones into float64.
    dtype = flats[0].dtype if np.issubdtype(flats[0].dtype, np.inexact) else np.result_type(flats[0].dtype, 1.0)
    buffer, out = _npy_buffer(shape, dtype)
    if out.size < 4 * BLOCK:
        _weighted_sum(flats, weights, out, 0, out.size)
    else:  # NumPy's ufuncs release the GIL: the halves run on two cores
        middle = (out.size // 2 // BLOCK) * BLOCK
        other = _POOL.submit(_weighted_sum, flats, weights, out, middle, out.size)
        _weighted_sum(flats, weights, out, 0, middle)
        other.result()
    return Array(dtype=str(dtype), shape=shape, stype=SType.NUMPY, data=bytes(buffer))


def aggregate_arrayrecords(records: list[RecordDict], weighting_metric_name: str) -> ArrayRecord:
    """Drop-in for Flower's `aggregate_arrayrecords`: same arguments, bit-identical result."""
    per_reply = [list(r.array_records.values()) for r in records]
    if not per_reply or any(len(items) != 1 for items in per_reply):
        return flowers_aggregate_arrayrecords(records, weighting_metric_name)
    arrays = [items[0] for items in per_reply]
    keys = list(arrays[0].keys())
    if any(list(a.keys()) != keys for a in arrays) or any(v.stype != SType.NUMPY for a in arrays for v in a.values()):
        return flowers_aggregate_arrayrecords(records, weighting_metric_name)
    weights = _weights(records, weighting_metric_name)
    result: dict[str, Array] = {}
    for key in keys:
        views = [flat_view(cast(Array, a[key])) for a in arrays]
        if any(v is None for v in views):
            return flowers_aggregate_arrayrecords(records, weighting_metric_name)
        flats, shapes = zip(*cast(list[tuple[np.ndarray, tuple[int, ...]]], views), strict=True)
        if len(set(shapes)) > 1 or len({f.dtype for f in flats}) > 1:
            return flowers_aggregate_arrayrecords(records, weighting_metric_name)
        result[key] = _aggregated_array(list(flats), shapes[0], weights)
    return ArrayRecord(result)


@contextlib.contextmanager
def replacing_flowers_aggregation() -> Iterator[None]:
    """Within the block, Flower's strategies aggregate with `aggregate_arrayrecords` above."""
    modules = (flower_fedavg, flower_multikrum)
    saved = [m.aggregate_arrayrecords for m in modules]
    for module in modules:
        module.aggregate_arrayrecords = aggregate_arrayrecords  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.aggregate_arrayrecords = original  # type: ignore[attr-defined]
