"""Decode stage: compressed source bytes -> the model's input pixels and the source's geometry.

The decoding itself (formats, EXIF orientation, memory bound, reduced-resolution decode) is Beam-free and
lives in `gazecrop.decode`; this module wraps it as the pipeline's `DecodeImages` transform.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import apache_beam as beam

from gazecrop.decode import DEFAULT_MAX_MEGAPIXELS, decode_for_model
from gazecrop.records import DecodedImage, SourceFile
from gazecrop.transforms.dead_letters import dead_letter_rows


class _DecodeFn(beam.DoFn):
    """SourceFile to DecodedImage (model input at the model's size, geometry, sha256)."""

    def __init__(self, input_size: Callable[[int, int], tuple[int, int]], max_megapixels: float):
        self._input_size = input_size
        self._max_megapixels = max_megapixels
        self._decoded = beam.metrics.Metrics.counter("gazecrop", "images_decoded")
        self._reduced = beam.metrics.Metrics.counter("gazecrop", "reduced_jpeg_decodes")
        self._time = beam.metrics.Metrics.distribution("gazecrop", "decode_us")

    def process(self, source: SourceFile):
        start = time.perf_counter()
        decoded = decode_for_model(source.data, input_size=self._input_size,
                                   max_megapixels=self._max_megapixels)
        self._time.update(int((time.perf_counter() - start) * 1e6))
        self._decoded.inc()
        if decoded.reduction > 1:
            self._reduced.inc()
        yield DecodedImage(uri=source.uri, relpath=source.relpath, data=source.data, sha256=decoded.sha256,
                           source_width=decoded.source_width, source_height=decoded.source_height,
                           pixels=decoded.pixels, modified_us=source.modified_us, generation=source.generation)


class DecodeImages(beam.PTransform):
    """Decode every source for the model. Returns `(decoded_images, error_rows)`.

    `input_size` is the model's `input_size(height, width)` (a `ModelInfo` method: picklable, no weights).
    """

    def __init__(self, *, input_size: Callable[[int, int], tuple[int, int]],
                 max_megapixels: float = DEFAULT_MAX_MEGAPIXELS):
        super().__init__()
        self._input_size = input_size
        self._max_megapixels = max_megapixels

    def expand(self, sources):
        decoded, failed = sources | "Decode" >> beam.ParDo(
            _DecodeFn(self._input_size, self._max_megapixels)).with_exception_handling()
        return decoded, failed | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="decode")
