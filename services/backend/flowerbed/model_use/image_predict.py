"""Class probabilities for one image sent to POST /models/{id}/predict.

The body is the image file itself (PNG or JPEG), not a multipart form: one format to check,
no form parser, and the body limit (flowerbed.api.limits) counts exactly the image. The image
must be what the model was trained on: 28×28 pixels for Fashion-MNIST models, the run's size
for models of node-local image folders; colour is converted to grey (or grey to colour). Its header
is checked before a pixel is decoded, so a huge or malformed file costs nothing; every
refusal is an `ImageRejected` naming what is wrong and where (the header or the body).
"""

from __future__ import annotations

import io
import warnings

import numpy as np

SIDE = 28
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
MEDIA_TYPES = frozenset(FORMATS.values())


class ImageRejected(ValueError):
    """The request's image cannot be used; `loc` is where the problem is, as in a 422's `loc`."""

    def __init__(self, loc: tuple[str, ...], reason: str) -> None:
        super().__init__(reason)
        self.loc = loc
        self.reason = reason


def decode(body: bytes, content_type: str, shape: tuple[int, ...] = (1, SIDE, SIDE)) -> np.ndarray:
    """uint8 [1, C, H, W] pixels of a PNG or JPEG body for a model of input `shape` (C, H, W),
    or ImageRejected saying why not."""
    from PIL import Image, UnidentifiedImageError

    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise ImageRejected(
            ("header", "content-type"),
            f"send the image file as the body with Content-Type image/png or image/jpeg (got {media_type or 'none'!r})",
        )
    channels, side_h, side_w = shape
    if not body:
        raise ImageRejected(("body",), f"empty body: send a {side_w}×{side_h} PNG or JPEG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(body), formats=list(FORMATS))  # reads the header only
            if image.size != (side_w, side_h):
                width, height = image.size
                raise ImageRejected(("body",), f"image is {width}×{height} pixels; the model takes {side_w}×{side_h}")
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageRejected(("body",), "not a readable PNG or JPEG image") from None
    if FORMATS[image.format or ""] != media_type:
        raise ImageRejected(("header", "content-type"), f"the body is a {image.format} image, but Content-Type says {media_type}")
    return (pixels[None] if channels == 1 else np.moveaxis(pixels, -1, 0))[None]
