"""Reading images for the model commands (the pipeline has its own, more defensive decoder)."""

from pathlib import Path

import cv2
import numpy as np


class ImageReadError(ValueError):
    """An image file could not be read or decoded; the message names the file and the reason."""


def read_image_rgb(path):
    """Reads an image file as uint8 (H, W, 3) RGB with its EXIF orientation applied.

    Grayscale, palette and alpha images are converted to 3-channel RGB (alpha dropped); 16-bit
    images are scaled to 8 bits. Raises ``ImageReadError`` naming the file when it is missing,
    empty or not decodable.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageReadError(f"cannot read image file {path}: {e.strerror or e}") from e
    if not data:
        raise ImageReadError(f"cannot decode image file {path}: the file is empty")
    # IMREAD_COLOR applies the EXIF orientation and returns 8-bit BGR.
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageReadError(f"cannot decode image file {path}: not an image OpenCV can read "
                             f"({len(data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize_for_model(rgb, size):
    """Resizes uint8 (H, W, 3) RGB to ``size = (h, w)`` as float32 0..255 for ``predict``."""
    h, w = size
    interpolation = cv2.INTER_AREA if h * w < rgb.shape[0] * rgb.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(rgb, (w, h), interpolation=interpolation).astype(np.float32)
