"""The composed pipeline: read -> decode -> RunInference -> crops -> write, and the two tables.

```
inputs ─▶ ReadImages ─▶ DecodeImages ─▶ PredictSaliency ─▶ SelectCrops ─▶ WriteCrops ─▶ metadata table
              │              │                │                 │              │
              └──────────────┴────────────────┴─────────────────┴──────────────┴─▶ errors table
```

Every stage returns its results and its error rows; all error rows go to the one errors table, so every
input ends as metadata rows (one per ratio and produced rank) or exactly one error row. With a --focus
table, the read stage's files also go to `LogUnmatchedFocusRows`, which logs the table's rows that name
no input file.
"""

from __future__ import annotations

from collections.abc import Mapping

import apache_beam as beam

from transforms.crop import CropConfig, Focus
from transforms.decode import DEFAULT_MAX_MEGAPIXELS, DecodeImages
from transforms.inference import DeepGazeModelHandler, ModelInfo, PredictSaliency
from transforms.metadata import ERRORS_SCHEMA, METADATA_SCHEMA, WriteTable
from transforms.read import DEFAULT_MAX_INPUT_BYTES, ReadImages
from transforms.select import LogUnmatchedFocusRows, SelectCrops
from transforms.write import OutputConfig, WriteCrops


class GazeCrop(beam.PTransform):
    """The whole job, applied to a pipeline's root. Returns `(metadata_rows, error_rows)`.

    Args:
      patterns: input globs/URIs; listed_uris: the URIs of an --input_list.
      model_info: the model (`transforms.inference.describe_model`).
      crop_config: the crop search (aspect ratios, candidates, min_scale, ...).
      focus: the --focus table, `{source URI or relpath: Focus}` (`transforms.crop.read_focus_table`);
        empty = no hints.
      output: how and where crops and tables are written.
      batch_size: most images per model call.
      max_megapixels: decompression-bomb guard.
      max_input_bytes: larger input files are refused before they are read (0: no limit).
      handler: the ModelHandler; default `DeepGazeModelHandler(model_info, max_batch_size=batch_size)`.
    """

    def __init__(self, *, patterns: list[str], listed_uris: list[str] = (), model_info: ModelInfo,
                 crop_config: CropConfig, focus: Mapping[str, Focus] | None = None,
                 output: OutputConfig, batch_size: int = 16,
                 max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
                 max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
                 handler: DeepGazeModelHandler | None = None):
        super().__init__()
        self._patterns = list(patterns)
        self._listed_uris = list(listed_uris)
        self._model_info = model_info
        self._crop_config = crop_config
        self._focus = dict(focus or {})
        self._output = output
        self._max_megapixels = max_megapixels
        self._max_input_bytes = max_input_bytes
        self._handler = handler or DeepGazeModelHandler(model_info, max_batch_size=batch_size)

    def expand(self, pbegin):
        sources, read_errors = pbegin | "ReadImages" >> ReadImages(
            patterns=self._patterns, listed_uris=self._listed_uris, max_input_bytes=self._max_input_bytes)
        if self._focus:
            _ = sources | "LogUnmatchedFocusRows" >> LogUnmatchedFocusRows(focus=self._focus)
        decoded, decode_errors = sources | "DecodeImages" >> DecodeImages(
            input_size=self._model_info.input_size, max_megapixels=self._max_megapixels)
        predicted, inference_errors = decoded | "PredictSaliency" >> PredictSaliency(self._handler)
        cropped, crop_errors = predicted | "SelectCrops" >> SelectCrops(
            config=self._crop_config, focus=self._focus)
        rows, write_errors = cropped | "WriteCrops" >> WriteCrops(config=self._output)
        errors = ((read_errors, decode_errors, inference_errors, crop_errors, write_errors)
                  | "AllErrors" >> beam.Flatten())
        _ = rows | "WriteMetadata" >> WriteTable(root=self._output.root, name="metadata", schema=METADATA_SCHEMA)
        _ = errors | "WriteErrors" >> WriteTable(root=self._output.root, name="errors", schema=ERRORS_SCHEMA)
        return rows, errors
