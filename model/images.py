"""Reading images for the model commands, with the pipeline's own decoder (`gazecrop.decode`), so
that training, evaluation and the pipeline see the same pixels."""

from pathlib import Path

import numpy as np

from gazecrop.decode import DecodeError, decode_full, resize_to


class ImageReadError(ValueError):
    """An image file could not be read or decoded; the message names the file and the reason."""


def read_image_rgb(path):
    """Reads an image file as uint8 (H, W, 3) RGB with its EXIF orientation applied.

    Grayscale, palette and 16-bit images become 8-bit RGB, and alpha is laid on white, as in the
    pipeline. Raises ``ImageReadError`` naming the file when it is missing, empty or not decodable.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageReadError(f"cannot read image file {path}: {e.strerror or e}") from e
    if not data:
        raise ImageReadError(f"cannot decode image file {path}: the file is empty")
    try:
        return decode_full(data)
    except DecodeError as e:
        raise ImageReadError(f"cannot decode image file {path}: {e}") from e


def resize_for_model(rgb, size):
    """Resizes uint8 (H, W, 3) RGB to ``size = (h, w)`` as float32 0..255 for ``predict``."""
    h, w = size
    return resize_to(rgb, (w, h)).astype(np.float32)
