"""One table row sent to POST /models/{id}/predict, checked and standardised for a tabular model.

The body is JSON, `{"features": {"<column>": <number>, ...}}`: one row per request, as one
image is, so both kinds of model answer with the same ranking of classes. Columns are named,
not positional, because a table's column order is an accident of the file it came from; the
checkpoint's metadata lists the columns the model was trained on, and every one of them must be
given, and no other. Values are standardised with the federation's mean and standard deviation
recorded in that metadata, by the same function the nodes trained with
(flowerbed_app.task.node_data.standardise). Every refusal is a `RowRejected` listing each problem
with its place in the body (a 422's `loc`), so a form can mark every bad field at once.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from flowerbed.model_use.loaded_checkpoints import ModelInput
from flowerbed_app.task.node_data import standardise

MEDIA_TYPE = "application/json"
FIELD = "features"


class RowRejected(ValueError):
    """The request's row cannot be used; `errors` are 422 entries (loc, msg) naming each problem."""

    def __init__(self, errors: list[tuple[tuple[str, ...], str]]) -> None:
        super().__init__("; ".join(msg for _, msg in errors))
        self.errors = errors


def is_row(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == MEDIA_TYPE


def decode(body: bytes, spec: ModelInput) -> np.ndarray:
    """float32 [1, F]: the row standardised as in training, or RowRejected naming every problem."""
    if not body:
        raise RowRejected([(("body",), f'empty body: send {{"{FIELD}": {{"<column>": <number>, ...}}}}')])
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise RowRejected([(("body",), "not valid JSON")]) from None
    if not isinstance(document, dict) or not isinstance(document.get(FIELD), dict):
        raise RowRejected(
            [((("body", FIELD)), f'send one row as {{"{FIELD}": {{"<column>": <number>, ...}}}} (a JSON object of columns)')]
        )
    errors: list[tuple[tuple[str, ...], str]] = [
        (("body", str(key)), f"unknown field; the body holds only {FIELD!r}") for key in document if key != FIELD
    ]
    row: dict[str, Any] = document[FIELD]
    known = set(spec.columns)
    for column in spec.columns:
        if column not in row:
            errors.append((("body", FIELD, column), f"missing column {column!r}: the model needs every column it was trained on"))
    for column in row:
        if column not in known:
            errors.append(
                (("body", FIELD, column), f"unknown column {column!r}; the model's columns are {', '.join(spec.columns)}")
            )
    values: list[float] = []
    for column in spec.columns:
        if column not in row:
            continue
        value = row[column]
        number = _number(value)
        if number is None:
            errors.append((("body", FIELD, column), f"column {column!r} must be a finite number, got {json.dumps(value)[:60]}"))
        values.append(number if number is not None else math.nan)
    if errors:
        raise RowRejected(errors)
    return standardise(np.asarray([values], dtype=np.float64), spec.feature_mean, spec.feature_std)


def _number(value: Any) -> float | None:
    """A JSON number as float; None for text, booleans, null, lists and non-finite or overflowing numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
