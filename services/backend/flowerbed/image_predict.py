"""Class probabilities for one image sent to POST /models/{id}/predict.

The body is the image file itself (PNG or JPEG), not a multipart form: one format to check,
no form parser, and the body limit (flowerbed.api.limits) counts exactly the image. The image
must be what the models were trained on, 28×28 pixels; colour is converted to grey. Its header
is checked before a pixel is decoded, so a huge or malformed file costs nothing; every
refusal is an `ImageRejected` naming what is wrong and where (the header or the body).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from flowerbed.checkpoint_models import LoadedModel

SIDE = 28
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
MEDIA_TYPES = frozenset(FORMATS.values())


class ImageRejected(ValueError):
    """The request's image cannot be used; `loc` is where the problem is, as in a 422's `loc`."""

    def __init__(self, loc: tuple[str, ...], reason: str) -> None:
        super().__init__(reason)
        self.loc = loc
        self.reason = reason


def decode(body: bytes, content_type: str) -> np.ndarray:
    """uint8 [28, 28] grey pixels of a PNG or JPEG body, or ImageRejected saying why not."""
    from PIL import Image, UnidentifiedImageError

    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise ImageRejected(
            ("header", "content-type"),
            f"send the image file as the body with Content-Type image/png or image/jpeg (got {media_type or 'none'!r})",
        )
    if not body:
        raise ImageRejected(("body",), "empty body: send a 28×28 PNG or JPEG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(body), formats=list(FORMATS))  # reads the header only
            if image.size != (SIDE, SIDE):
                width, height = image.size
                raise ImageRejected(("body",), f"image is {width}×{height} pixels; the model takes {SIDE}×{SIDE}")
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageRejected(("body",), "not a readable PNG or JPEG image") from None
    if FORMATS[image.format or ""] != media_type:
        raise ImageRejected(("header", "content-type"), f"the body is a {image.format} image, but Content-Type says {media_type}")
    return pixels


def predict(loaded: LoadedModel, pixels: np.ndarray) -> list[dict[str, Any]]:
    """Every class with its probability, most probable first."""
    import torch

    from flowerbed_app.fashion_mnist import CLASS_NAMES
    from flowerbed_app.training import to_tensor

    with torch.inference_mode():
        probabilities = loaded.module(to_tensor(pixels[None])).exp()[0].tolist()
    ranked = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])
    return [
        {"class_index": i, "label": CLASS_NAMES[i] if i < len(CLASS_NAMES) else str(i), "probability": probabilities[i]}
        for i in ranked
    ]
