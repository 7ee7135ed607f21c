"""Compressed model updates (client → server): top-k sparsification, int8, error feedback.

A client sends its UPDATE (trained weights minus the global weights it received),
not its weights. Float tensors are encoded as arrays that are really smaller:
top-k keeps the largest-magnitude entries as int32 indices + float16 values; int8
quantizes with one float32 scale per tensor; topk+int8 does both. Non-float tensors
(e.g. BatchNorm's step counter) travel dense as their new value.

Error feedback: what the encoding dropped (update + old residual − decoded) is kept
by the client and added to its next update, so nothing is lost, only delayed. The
residual is the exact difference to what the server will decode, quantization
error included.

This module is pure numpy: no Flower messages, no disk, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

SCHEMES = ("none", "topk", "int8", "topk+int8")
SEP = "|"  # state-dict names contain dots; the suffix after SEP says what the array is


def _is_float(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.floating)


def encode(update: np.ndarray, scheme: str, ratio: float) -> dict[str, np.ndarray]:
    """Encode one float tensor's update; the arrays go into an ArrayRecord under name|suffix."""
    flat = np.ascontiguousarray(update, dtype=np.float32).ravel()
    parts: dict[str, np.ndarray] = {"shape": np.asarray(update.shape, dtype=np.int64)}
    if scheme in ("topk", "topk+int8"):
        k = max(1, round(ratio * flat.size))
        if k >= flat.size:
            indices = np.arange(flat.size, dtype=np.int32)
        else:
            indices = np.sort(np.argpartition(np.abs(flat), flat.size - k)[flat.size - k :]).astype(np.int32)
        parts["idx"] = indices
        values = flat[indices]
    elif scheme == "int8":
        values = flat
    else:
        raise ValueError(f"unknown compression scheme {scheme!r}; valid: {', '.join(SCHEMES[1:])}")
    if scheme.endswith("int8"):
        peak = float(np.max(np.abs(values))) if values.size else 0.0
        scale = peak / 127.0 if peak > 0 else 1.0
        parts["q"] = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
        parts["scale"] = np.asarray([scale], dtype=np.float32)
    else:
        # float16 halves the bytes; a tensor beyond its range (~65504) stays float32.
        fits = not values.size or float(np.max(np.abs(values))) < 60_000.0
        parts["val"] = values.astype(np.float16 if fits else np.float32)
    return parts


def decode(parts: Mapping[str, np.ndarray]) -> np.ndarray:
    """The dense float32 update `encode` produced `parts` from (lossy)."""
    shape = tuple(int(d) for d in parts["shape"])
    values = parts["q"].astype(np.float32) * np.float32(parts["scale"][0]) if "q" in parts else parts["val"].astype(np.float32)
    if "idx" not in parts:
        return values.reshape(shape)
    dense = np.zeros(int(np.prod(shape)), dtype=np.float32)
    dense[parts["idx"]] = values
    return dense.reshape(shape)


def compress_update(
    new: Mapping[str, np.ndarray],
    base: Mapping[str, np.ndarray],
    residual: Mapping[str, np.ndarray] | None,
    scheme: str,
    ratio: float,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(arrays to send, new residual) for trained weights `new` vs received weights `base`."""
    sent: dict[str, np.ndarray] = {}
    new_residual: dict[str, np.ndarray] = {}
    for name, weights in new.items():
        if not _is_float(weights):
            sent[f"{name}{SEP}dense"] = np.asarray(weights)
            continue
        update = weights.astype(np.float32) - base[name].astype(np.float32)
        if residual is not None and name in residual and residual[name].shape == update.shape:
            update = update + residual[name]
        parts = encode(update, scheme, ratio)
        new_residual[name] = update - decode(parts)
        sent.update({f"{name}{SEP}{suffix}": array for suffix, array in parts.items()})
    return sent, new_residual


def decompress_update(sent: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The client's weights as the server sees them: base + decoded update, in base's order.

    `sent` comes from another machine: its parts are checked against `base` before
    anything is allocated or indexed (a claimed shape could ask for terabytes, an index
    could point anywhere); ValueError names what is wrong."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, array in sent.items():
        name, _, suffix = key.rpartition(SEP)
        grouped.setdefault(name, {})[suffix] = array
    missing, extra = set(base) - set(grouped), set(grouped) - set(base)
    if missing or extra:
        raise ValueError(f"compressed update lacks tensors {sorted(missing)[:3]} or has unknown ones {sorted(extra)[:3]}")
    weights: dict[str, np.ndarray] = {}
    for name, reference in base.items():
        parts = grouped[name]
        _check_parts(name, parts, reference)
        if "dense" in parts:
            weights[name] = np.asarray(parts["dense"], dtype=reference.dtype).reshape(reference.shape)
        else:
            weights[name] = (reference.astype(np.float32) + decode(parts)).astype(reference.dtype)
    return weights


def _check_parts(name: str, parts: Mapping[str, np.ndarray], reference: np.ndarray) -> None:
    """The parts `encode` makes for a tensor like `reference`, consistent with each other."""
    if "dense" in parts:
        if set(parts) != {"dense"} or parts["dense"].size != reference.size:
            raise ValueError(f"{name}: a dense part must hold exactly the tensor's {reference.size} values")
        return
    values = parts.get("q", parts.get("val"))
    kinds = set(parts) - {"idx"}
    if kinds not in ({"shape", "q", "scale"}, {"shape", "val"}) or values is None or values.ndim != 1:
        raise ValueError(f"{name}: parts {sorted(parts)} are not an encoded update")
    if tuple(int(d) for d in np.ravel(parts["shape"])) != reference.shape:
        raise ValueError(f"{name}: encoded shape {parts['shape'].tolist()} is not the tensor's {list(reference.shape)}")
    if "q" in parts and (parts["q"].dtype != np.int8 or parts["scale"].size != 1):
        raise ValueError(f"{name}: int8 parts need int8 values and one scale")
    if "idx" not in parts:
        if values.size != reference.size:
            raise ValueError(f"{name}: {values.size} values for a tensor of {reference.size}")
        return
    idx = parts["idx"]
    if not np.issubdtype(idx.dtype, np.integer) or idx.shape != values.shape:
        raise ValueError(f"{name}: top-k needs one integer index per value")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= reference.size):
        raise ValueError(f"{name}: top-k indices outside 0..{reference.size - 1}")


def is_compressed(keys: list[str]) -> bool:
    return bool(keys) and all(SEP in key for key in keys)
