"""Crop stage: saliency maps to ranked crops per aspect ratio, vectorised over a batch and all ratios.

The search itself is `transforms.crop.choose_crops` (summed-area tables over the batch); this module only
batches the images (same map shape per call), looks up each image's focus (the --focus table), and keeps
each image's crops (every ratio, ranks 0 .. --candidates - 1) and its focal point.

The focus table (`transforms.crop.read_focus_table`) is a `{key: Focus}` dict read once when the job is
built; it travels with the job like the --input_list URIs. A key names an image by its source URI or by
its path relative to its input root (`focus_key`). Rows that name no input file are logged and counted
by `LogUnmatchedFocusRows`; they change nothing else.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np

from transforms.crop import CropConfig, Focus, choose_crops, focal_point
from transforms.inference import group_by_shape_of
from transforms.paths import safe_relpath
from transforms.records import CroppedImage, SaliencyImage, SourceFile, dead_letter_rows

_LOGGER = logging.getLogger(__name__)


def rekey_focus_table(focus: Mapping[str, Focus]) -> dict[str, Focus]:
    """The --focus table keyed the way images are named: a key that is a source URI (a scheme, or an
    absolute local path) stays as it is; a path relative to the input root is mapped through
    `transforms.paths.safe_relpath`, the rule that names outputs (unicode normalisation, escapes), so
    the raw relative path a person writes matches an image whose output name had to be escaped."""
    return {key if "://" in key or os.path.isabs(key) else safe_relpath(key): value
            for key, value in focus.items()}


def focus_key(focus: Mapping[str, Focus], uri: str, relpath: str) -> str | None:
    """The focus-table key naming an image: its source URI, else its relpath; None if neither is a key."""
    for key in (uri, relpath):
        if key in focus:
            return key
    return None


def select_crops(images: Sequence[SaliencyImage], config: CropConfig,
                 focus: Mapping[str, Focus] | None = None) -> list[CroppedImage]:
    """Ranked crops per ratio and focal point of every image; one `choose_crops` call per map shape.

    `focus` ({key: Focus}, see `focus_key`) gives the region an image's crops must all contain.
    """
    focus = focus or {}
    results: list[CroppedImage | None] = [None] * len(images)
    for indices in group_by_shape_of([image.log_density for image in images]).values():
        maps = np.stack([images[i].log_density for i in indices])
        sizes = [(images[i].source_width, images[i].source_height) for i in indices]
        keys = [focus_key(focus, images[i].uri, images[i].relpath) for i in indices]
        hints = [None if key is None else focus[key] for key in keys]
        for i, size, hint, crops in zip(indices, sizes, hints, choose_crops(maps, sizes, config, focus=hints)):
            focal_x, focal_y = focal_point(images[i].log_density, size)
            results[i] = CroppedImage(image=images[i], crops=tuple(crops), focal_x=focal_x, focal_y=focal_y,
                                      focus=hint)
    return results


class _SelectCropsFn(beam.DoFn):
    def __init__(self, config: CropConfig, focus: Mapping[str, Focus]):
        self._config = config
        self._focus = focus
        self._time = beam.metrics.Metrics.distribution("gazecrop", "crop_us")
        self._focused = beam.metrics.Metrics.counter("gazecrop", "images_with_focus")

    def process(self, batch: list[SaliencyImage]):
        start = time.perf_counter()
        results = select_crops(batch, self._config, self._focus)
        self._time.update(int((time.perf_counter() - start) * 1e6))
        if self._focus:
            self._focused.inc(sum(focus_key(self._focus, i.uri, i.relpath) is not None for i in batch))
        yield from results


class SelectCrops(beam.PTransform):
    """Crops for every image. Returns `(cropped_images, error_rows)`.

    Args:
      config: the crop search (ratios, --candidates, --min_scale, ...).
      focus: the --focus table, `{key: Focus}` (see `focus_key`); empty = the model alone decides.
      max_batch_size: most images per `choose_crops` call.
    """

    def __init__(self, *, config: CropConfig, focus: Mapping[str, Focus] | None = None,
                 max_batch_size: int = 64):
        super().__init__()
        self._config = config
        self._focus = dict(focus or {})
        self._max_batch_size = max_batch_size

    def expand(self, images):
        cropped, failed = (
            images
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch_size)
            | "Choose" >> beam.ParDo(_SelectCropsFn(self._config, self._focus)).with_exception_handling())
        return cropped, failed | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="crop")


# ----------------------------------------------------------------------------------------------
# Focus rows that name no input file
# ----------------------------------------------------------------------------------------------

def focus_keys_found(source: SourceFile, *, keys: frozenset) -> list[str]:
    """The focus-table keys that name `source` (its URI and/or its relpath)."""
    return [key for key in (source.uri, source.relpath) if key in keys]


def unmatched_focus_keys(found: Iterable[str], *, keys: frozenset) -> list[str]:
    """The table's keys that no input file matched, sorted."""
    return sorted(keys - set(found))


class _LogUnmatchedFocusRowFn(beam.DoFn):
    def __init__(self):
        self._unmatched = beam.metrics.Metrics.counter("gazecrop", "focus_rows_unmatched")

    def process(self, key: str):
        _LOGGER.warning("--focus row %r names no input file (neither a source URI nor a path relative "
                        "to an input root); ignored", key)
        self._unmatched.inc()
        yield key


class LogUnmatchedFocusRows(beam.PTransform):
    """Log (and count as `focus_rows_unmatched`) each --focus row that names no input file; such a row
    is otherwise ignored. Applied to the read stage's `SourceFile`s: a row naming a file that exists
    but fails later is matched (the file has its error row). Returns the unmatched keys."""

    def __init__(self, *, focus: Mapping[str, Focus]):
        super().__init__()
        self._keys = frozenset(focus)

    def expand(self, sources):
        return (
            sources
            | "KeysFound" >> beam.FlatMap(focus_keys_found, keys=self._keys)
            | "AllKeysFound" >> beam.combiners.ToSet()
            | "Unmatched" >> beam.FlatMap(unmatched_focus_keys, keys=self._keys)
            | "Log" >> beam.ParDo(_LogUnmatchedFocusRowFn()))
