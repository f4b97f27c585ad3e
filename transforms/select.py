"""Crop stage: saliency maps to one crop per aspect ratio, vectorised over a batch and all ratios.

The search itself is `transforms.crop.choose_crops` (summed-area tables over the batch); this module only
batches the images (same map shape per call) and keeps each image's rank-0 crop per ratio and its focal
point.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import apache_beam as beam
import numpy as np

from transforms.crop import CropConfig, choose_crops, focal_point
from transforms.inference import group_by_shape_of
from transforms.records import CroppedImage, SaliencyImage, dead_letter_rows


def select_crops(images: Sequence[SaliencyImage], config: CropConfig) -> list[CroppedImage]:
    """Best crop per ratio and focal point of every image; one `choose_crops` call per map shape."""
    results: list[CroppedImage | None] = [None] * len(images)
    for indices in group_by_shape_of([image.log_density for image in images]).values():
        maps = np.stack([images[i].log_density for i in indices])
        sizes = [(images[i].source_width, images[i].source_height) for i in indices]
        for i, size, crops in zip(indices, sizes, choose_crops(maps, sizes, config)):
            focal_x, focal_y = focal_point(images[i].log_density, size)
            best = tuple(c for c in crops if c.rank == 0)
            results[i] = CroppedImage(image=images[i], crops=best, focal_x=focal_x, focal_y=focal_y)
    return results


class _SelectCropsFn(beam.DoFn):
    def __init__(self, config: CropConfig):
        self._config = config
        self._time = beam.metrics.Metrics.distribution("gazecrop", "crop_us")

    def process(self, batch: list[SaliencyImage]):
        start = time.perf_counter()
        results = select_crops(batch, self._config)
        self._time.update(int((time.perf_counter() - start) * 1e6))
        yield from results


class SelectCrops(beam.PTransform):
    """Crops for every image. Returns `(cropped_images, error_rows)`."""

    def __init__(self, *, config: CropConfig, max_batch_size: int = 64):
        super().__init__()
        self._config = config
        self._max_batch_size = max_batch_size

    def expand(self, images):
        cropped, failed = (
            images
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch_size)
            | "Choose" >> beam.ParDo(_SelectCropsFn(self._config)).with_exception_handling())
        return cropped, failed | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="crop")
