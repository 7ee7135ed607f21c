"""A prediction request's body as the model's input: a table row for tabular models, an image file
for image models; anything else a 422 that says what this model takes instead (POST /models/{id}/predict)."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

from flowerbed.model_use import image_predict, row_predict
from flowerbed.model_use.loaded_checkpoints import LoadedModel


def decode(loaded: LoadedModel, body: bytes, content_type: str) -> Any:
    """The body as the model's input, or a 422 saying what this model takes instead."""
    spec = loaded.input
    is_row = row_predict.is_row(content_type)
    name = f"model {loaded.model_id} ({loaded.architecture})"
    if spec.kind == "table":
        if not is_row:
            media_type = content_type.split(";", 1)[0].strip() or "none"
            what = "an image" if media_type.lower() in image_predict.MEDIA_TYPES else f"a body of type {media_type}"
            raise _invalid(
                ("header", "content-type"),
                f"{name} takes a table row, not {what}: send "
                f'{{"{row_predict.FIELD}": {{"<column>": <number>, ...}}}} with Content-Type {row_predict.MEDIA_TYPE}',
            )
        try:
            return row_predict.decode(body, spec)
        except row_predict.RowRejected as exc:
            raise RequestValidationError(
                [{"type": "value_error", "loc": loc, "msg": msg, "input": None} for loc, msg in exc.errors]
            ) from None
    if is_row:
        _, height, width = spec.shape
        raise _invalid(
            ("header", "content-type"),
            f"{name} takes an image, not a table row: send the {width}×{height} PNG or JPEG file itself as the body "
            "with Content-Type image/png or image/jpeg",
        )
    try:
        return image_predict.decode(body, content_type, spec.shape)
    except image_predict.ImageRejected as exc:
        raise _invalid(exc.loc, exc.reason) from None


def _invalid(loc: tuple[str, ...], msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": None}])
