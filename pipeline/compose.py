"""The composed pipeline: read -> decode -> RunInference -> crops -> write, and the two tables.

```
inputs ─▶ ReadImages ─▶ DecodeImages ─▶ PredictSaliency ─▶ SelectCrops ─▶ WriteCrops ─▶ metadata table
              │              │                │                 │              │
              └──────────────┴────────────────┴─────────────────┴──────────────┴─▶ errors table
```

Every stage returns its results and its error rows; all error rows go to the one errors table, so every
input ends as metadata rows (one per ratio) or exactly one error row.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.crop import CropConfig
from transforms.decode import DEFAULT_MAX_MEGAPIXELS, DecodeImages
from transforms.inference import DeepGazeModelHandler, ModelInfo, PredictSaliency
from transforms.metadata import ERRORS_SCHEMA, METADATA_SCHEMA, WriteTable
from transforms.read import ReadImages
from transforms.select import SelectCrops
from transforms.write import OutputConfig, WriteCrops


class GazeCrop(beam.PTransform):
    """The whole job, applied to a pipeline's root. Returns `(metadata_rows, error_rows)`.

    Args:
      patterns: input globs/URIs; listed_uris: the URIs of an --input_list.
      model_info: the model (`transforms.inference.describe_model`).
      crop_config: the crop search (aspect ratios and its tunables).
      output: how and where crops and tables are written.
      batch_size: most images per model call.
      max_megapixels: decompression-bomb guard.
      handler: the ModelHandler; default `DeepGazeModelHandler(model_info, max_batch_size=batch_size)`.
    """

    def __init__(self, *, patterns: list[str], listed_uris: list[str] = (), model_info: ModelInfo,
                 crop_config: CropConfig, output: OutputConfig, batch_size: int = 16,
                 max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
                 handler: DeepGazeModelHandler | None = None):
        super().__init__()
        self._patterns = list(patterns)
        self._listed_uris = list(listed_uris)
        self._model_info = model_info
        self._crop_config = crop_config
        self._output = output
        self._max_megapixels = max_megapixels
        self._handler = handler or DeepGazeModelHandler(model_info, max_batch_size=batch_size)

    def expand(self, pbegin):
        sources, read_errors = pbegin | "ReadImages" >> ReadImages(
            patterns=self._patterns, listed_uris=self._listed_uris)
        decoded, decode_errors = sources | "DecodeImages" >> DecodeImages(
            input_size=self._model_info.input_size, max_megapixels=self._max_megapixels)
        predicted, inference_errors = decoded | "PredictSaliency" >> PredictSaliency(self._handler)
        cropped, crop_errors = predicted | "SelectCrops" >> SelectCrops(config=self._crop_config)
        rows, write_errors = cropped | "WriteCrops" >> WriteCrops(config=self._output)
        errors = ((read_errors, decode_errors, inference_errors, crop_errors, write_errors)
                  | "AllErrors" >> beam.Flatten())
        _ = rows | "WriteMetadata" >> WriteTable(root=self._output.root, name="metadata", schema=METADATA_SCHEMA)
        _ = errors | "WriteErrors" >> WriteTable(root=self._output.root, name="errors", schema=ERRORS_SCHEMA)
        return rows, errors
