"""`gazecrop.crop`: the crops of one picture, in this process, without a Beam job.

A path goes through the pipeline's own decoder (`gazecrop.decode.decode_for_model`: EXIF orientation,
reduced-resolution JPEG decode for the model input), then the same model call
(`gazecrop.model.predict.predict_with_faces`: the map and the faces its face prior found) and the same crop
search (`gazecrop.search.crop_images`) as the pipeline's stages, so the boxes, focal point and
`saliency_kept` are the numbers `gazecrop run` writes in its metadata table for that file and those settings.
(One caveat: the pipeline may give the model several pictures of one input shape in one call, and a batched
convolution can differ from a single one in the last bits of a float; rarely, that moves a crop by a pixel.)

The model is loaded once per process and spec (`gazecrop.model.predict.load_cached`): the first call
takes a few seconds (TensorFlow, the weights), later ones only the prediction.

    >>> import numpy as np
    >>> import gazecrop
    >>> picture = np.full((400, 600, 3), 40, np.uint8)    # an RGB uint8 (H, W, 3) array, or a file path
    >>> picture[150:250, 450:550] = 255                   # a bright square, right of centre
    >>> cropped = gazecrop.crop(picture, aspect_ratios=("1:1", "16:9"))
    >>> [(box.aspect_ratio, box.width, box.height) for box in cropped.crops]
    [('1:1', 400, 400), ('16:9', 592, 333)]
    >>> cropped["1:1"].x > 100                            # the square crop moves toward the bright square
    True
    >>> sorted(cropped.to_dict()["crops"][0])
    ['aspect_ratio', 'focal_x', 'focal_y', 'height', 'rank', 'saliency_kept', 'width', 'x', 'y']
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from gazecrop.decode import DEFAULT_MAX_MEGAPIXELS, DecodeError, ModelInput, array_for_model, decode_for_model
from gazecrop.model.card import MODEL_NAMES, check_model_spec
from gazecrop.model.predict import load_cached, predict_with_faces
from gazecrop.search import CropConfig, Focus, crop_images, parse_aspect_ratios, ratio_label

__all__ = ["CropBox", "Cropped", "crop"]

ImageLike = Union[str, os.PathLike, np.ndarray]


@dataclasses.dataclass(frozen=True)
class CropBox:
    """One crop of a picture, in source pixels (after EXIF orientation): the metadata table's columns."""
    aspect_ratio: str     # "16:9" (the `aspect_ratio` column)
    x: int                # crop_x, crop_y, crop_width, crop_height
    y: int
    width: int
    height: int
    focal_x: int          # the saliency peak (the same for every crop of a picture)
    focal_y: int
    saliency_kept: float  # share of the predicted density inside the crop
    rank: int = 0         # 0 = the best window of its ratio; 1.. with candidates > 1

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x, y, width, height)."""
        return self.x, self.y, self.width, self.height

    def to_dict(self) -> dict[str, Any]:
        return {"aspect_ratio": self.aspect_ratio, "rank": self.rank, "x": self.x, "y": self.y,
                "width": self.width, "height": self.height, "focal_x": self.focal_x, "focal_y": self.focal_y,
                "saliency_kept": self.saliency_kept}


@dataclasses.dataclass(frozen=True)
class Cropped:
    """The crops of one picture: per ratio (in the order asked) its ranks, best first."""
    source: str | None    # the path as given; None for an array
    width: int            # the source's size after EXIF orientation
    height: int
    crops: tuple[CropBox, ...]
    model_version: str

    def __getitem__(self, aspect_ratio: str) -> CropBox:
        """The best crop of a ratio: `cropped["16:9"]` (also "16x9", "16/9")."""
        label = ratio_label(parse_aspect_ratios(aspect_ratio, name="aspect_ratio")[0])
        for box in self.crops:
            if box.aspect_ratio == label and box.rank == 0:
                return box
        raise KeyError(f"no {label} crop; the ratios cropped are "
                       f"{', '.join(dict.fromkeys(b.aspect_ratio for b in self.crops))}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `gazecrop crop --json` prints for the picture."""
        return {"source": self.source, "width": self.width, "height": self.height,
                "model_version": self.model_version, "crops": [box.to_dict() for box in self.crops]}


def _check_ratios(aspect_ratios) -> tuple[tuple[int, int], ...]:
    """"1:1,16:9", ["1:1", "16x9"] or [(1, 1), (16, 9)] -> ((1, 1), (16, 9)), with the pipeline's parser."""
    if not isinstance(aspect_ratios, str):
        if not isinstance(aspect_ratios, Sequence):
            raise TypeError(f"aspect_ratios must be a str such as '1:1,16:9' or a sequence of ratios. "
                            f"Received: aspect_ratios={aspect_ratios!r}")
        aspect_ratios = [f"{r[0]}:{r[1]}" if isinstance(r, tuple) and len(r) == 2 else r for r in aspect_ratios]
    return parse_aspect_ratios(aspect_ratios, name="aspect_ratios")


def _check_image(image) -> Path | np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        if not str(image):
            raise ValueError(f"image must name a file. Received: image={image!r}")
        return Path(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a file path or an RGB uint8 numpy array (H, W, 3). "
                        f"Received: image of type {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"image must be an RGB uint8 array of shape (H, W, 3), H and W >= 1. "
                         f"Received: image.shape={image.shape}, image.dtype={image.dtype}")
    return image


def _check_model(model) -> str:
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be {', '.join(map(repr, MODEL_NAMES))} or a readout weights file path. "
                        f"Received: model={model!r}")
    try:
        return check_model_spec(str(model))  # what --model accepts
    except ValueError:
        raise ValueError(f"model must be {', '.join(map(repr, MODEL_NAMES))} or a readout weights file "
                         f"(*.weights.h5) that exists. Received: model={str(model)!r}") from None


def _check_max_megapixels(max_megapixels) -> float:
    if isinstance(max_megapixels, bool) or not isinstance(max_megapixels, (int, float)) \
            or not math.isfinite(max_megapixels) or max_megapixels <= 0:
        raise ValueError(f"max_megapixels must be a number > 0. Received: max_megapixels={max_megapixels!r}")
    return float(max_megapixels)


def _model_input(source: Path | np.ndarray, data: bytes | None, input_size, max_megapixels: float) -> ModelInput:
    """The decode stage's result for a file's bytes, or the same resize for an array."""
    if data is None:
        return array_for_model(source, input_size=input_size)
    try:
        return decode_for_model(data, input_size=input_size, max_megapixels=max_megapixels)
    except DecodeError as exc:
        raise type(exc)(f"{source}: {exc}") from exc


def crop(image: ImageLike, aspect_ratios: str | Sequence = ("1:1", "16:9"), model: str | os.PathLike = "default",
         *, candidates: int = 1, min_scale: float = 1.0, focus=None,
         max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> Cropped:
    """The crops of one picture: the boxes `gazecrop run` would choose, with no Beam job.

    Args:
      image: a file path (any format the pipeline reads; its EXIF orientation applied), or an upright
        RGB uint8 numpy array (H, W, 3).
      aspect_ratios: the ratios, as `gazecrop run --aspect_ratios` takes them ("1:1,16:9", ["1:1", "16x9",
        "1.91:1"]) or (width, height) pairs. Default: a square thumbnail and a 16:9 card
        (`gazecrop run` and `gazecrop crop` default to 1:1, 16:9, 9:16, 4:5).
      model: "default", "fast", "tiny" or a readout weights file (`--model`). Loaded once per process.
      candidates: ranked crops per ratio (`--candidates`).
      min_scale: smallest window tried, as a share of the largest of the ratio (`--min_scale`).
      focus: a region every crop must contain, in source pixels: (x, y), (x, y, width, height) or a
        `gazecrop.search.Focus` (a `--focus` table row).
      max_megapixels: refuse a file whose header declares more (`--max_megapixels`).

    Returns:
      A `Cropped`: the source's size after EXIF orientation, and per ratio (in the order asked) its
      `CropBox`es, rank 0 first.

    Raises:
      TypeError, ValueError: a bad argument (checked before any work; the message ends `Received: ...`).
      OSError: the file cannot be read.
      gazecrop.decode.DecodeError: the file is not a picture the pipeline decodes (the message names it).
    """
    picture = _check_image(image)
    if isinstance(candidates, bool) or not isinstance(candidates, int):
        raise TypeError(f"candidates must be an int >= 1. Received: candidates={candidates!r}")
    config = CropConfig(aspect_ratios=_check_ratios(aspect_ratios), candidates=candidates, min_scale=min_scale)
    hint = Focus.coerce(focus)
    spec = _check_model(model)
    max_megapixels = _check_max_megapixels(max_megapixels)

    # A file is read before the model loads (seconds, the first time): a wrong path fails at once.
    data = None if isinstance(picture, np.ndarray) else picture.read_bytes()  # an OSError names the file
    loaded = load_cached(spec)
    model_input = _model_input(picture, data, loaded.input_size, max_megapixels)
    log_densities, faces = predict_with_faces(loaded, [model_input.pixels])
    size = (model_input.source_width, model_input.source_height)
    found = crop_images(log_densities, [size], config, focus=[hint], faces=faces)[0]
    boxes = tuple(CropBox(aspect_ratio=c.aspect_ratio, x=c.x, y=c.y, width=c.width, height=c.height,
                          focal_x=found.focal_x, focal_y=found.focal_y, saliency_kept=float(c.saliency_kept),
                          rank=c.rank)
                  for c in found.crops)
    return Cropped(source=None if isinstance(picture, np.ndarray) else str(image), width=size[0], height=size[1],
                   crops=boxes, model_version=loaded.version)
