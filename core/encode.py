"""Crop files from a decoded source: cut a crop's pixels out, shrink them, encode them to deterministic bytes.

Beam-free, so that the write stage (`gazecrop.transforms.write`) and `gazecrop crop --output` cut and
encode a crop the same way: the same crop of the same source gives the same bytes from either.
"""

from __future__ import annotations

import cv2
import numpy as np

from gazecrop.decode import resize_to
from gazecrop.search import Crop

# PNG zlib level: 6 is zlib's default trade-off; fixed so the bytes are reproducible.
PNG_COMPRESSION = 6


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Crop size after the --max_output_side downscale (never upscaled)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode(rgb: np.ndarray, encoding: str, quality: int) -> bytes:
    """Deterministic encoding of uint8 RGB pixels (no metadata)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if encoding == "jpeg":
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    elif encoding == "png":
        ok, buffer = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    elif encoding == "webp":
        ok, buffer = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, quality])
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} {encoding}")
    return buffer.tobytes()


def cut(pixels: np.ndarray, crop: Crop, max_side: int, reduction: int = 1) -> np.ndarray:
    """The crop's pixels, downscaled to --max_output_side if needed.

    `pixels` is the source decoded at 1/`reduction` scale; the crop is in full-scale source pixels.
    """
    width, height = pixels.shape[1] * reduction, pixels.shape[0] * reduction  # rounded up by the decoder
    if crop.x < 0 or crop.y < 0 or crop.x + crop.width > width or crop.y + crop.height > height:
        raise ValueError(f"crop {crop} is outside the {width}x{height} source")
    left, top = round(crop.x / reduction), round(crop.y / reduction)
    right, bottom = round((crop.x + crop.width) / reduction), round((crop.y + crop.height) / reduction)
    region = pixels[top:bottom, left:right]
    return resize_to(region, output_size(crop.width, crop.height, max_side))
