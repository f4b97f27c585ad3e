"""The stage chain every image goes through, and the batch job built around it.

One chain (`crop_sources`), used by the batch job (`GazeCrop`, below) and the streaming job
(`gazecrop.pipeline.stream.build_streaming`), so a streamed image is cropped and described exactly as in a
batch run:

```
read sources ─▶ DecodeImages ─▶ PredictSaliency ─▶ SelectCrops ─▶ WriteCrops ─▶ metadata rows
                     └───────────────┴─────────────────┴──────────────┴─▶ error rows, stage by stage
```

What each job puts around it is its own: the batch job matches its inputs and writes whole tables,

```
inputs ─▶ MatchImages ─▶ ListGenerations ─▶ [SkipUnchanged] ─▶ ReadImages ─▶ crop_sources ─▶ metadata table
              │                                  │ old rows kept   │              │
              │                                  └─────────────────┼──────────────┼─▶ (both tables)
              └────────────────────────────────────────────────────┴──────────────┴─▶ errors table
```

the streaming job takes notified or polled files once each and writes a table file per window
(`gazecrop.pipeline.stream`).

Every stage returns its results and its error rows; all error rows go to the one errors table, so every
input ends as metadata rows (one per ratio and produced rank) or exactly one error row. With a --focus
table, the read stage's files also go to `LogUnmatchedFocusRows`, which logs the table's rows that name
no input file.

The matched gs:// files get their object generations (`gazecrop.transforms.generations`), which every metadata
row records. With `incremental=True` the matched files then meet the existing tables
(`gazecrop.transforms.incremental`): files already done skip every stage, and their old rows join this run's
rows in the rewritten tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import apache_beam as beam

from gazecrop.pipeline.progress import Tick
from gazecrop.search import CropConfig, Focus, ratio_label
from gazecrop.decode import DEFAULT_MAX_MEGAPIXELS
from gazecrop.transforms.decode import DecodeImages
from gazecrop.transforms.generations import ListGenerations
from gazecrop.transforms.inference import DeepGazeModelHandler, ModelInfo, PredictSaliency
from gazecrop.transforms.metadata import ERRORS_SCHEMA, METADATA_SCHEMA, WriteTable
from gazecrop.transforms.incremental import SkipUnchanged
from gazecrop.transforms.read import DEFAULT_MAX_INPUT_BYTES, MatchImages, ReadMatchedFiles
from gazecrop.transforms.select import LogUnmatchedFocusRows, SelectCrops
from gazecrop.transforms.write import OutputConfig, WriteCrops, settings_id


class Cropped(NamedTuple):
    """What the chain made of its sources: metadata rows, and each stage's error rows (decode, inference,
    crop selection, write: kept apart, so that a progress bar can count each branch as it goes)."""
    rows: beam.PCollection
    errors: tuple[beam.PCollection, ...]


def crop_sources(sources: beam.PCollection, *, model_info: ModelInfo, handler: DeepGazeModelHandler,
                 crop_config: CropConfig, focus: Mapping[str, Focus], output: OutputConfig,
                 max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> Cropped:
    """The chain, from read sources (`ReadMatchedFiles`) to the written crops and their metadata rows:
    DecodeImages -> PredictSaliency (RunInference, `handler`) -> SelectCrops -> WriteCrops.

    Applied in the caller's scope, not as a composite transform of its own: its steps keep the names the
    jobs have always had (`GazeCrop/DecodeImages` in the batch job, `DecodeImages` in the streaming job),
    which the job-graph tests (tests/test_launch_dataflow.py) and Dataflow's update of a running streaming
    job (it matches the old job's steps to the new one's by name) rely on.
    """
    decoded, decode_errors = sources | "DecodeImages" >> DecodeImages(
        input_size=model_info.input_size, max_megapixels=max_megapixels)
    predicted, inference_errors = decoded | "PredictSaliency" >> PredictSaliency(handler)
    cropped, crop_errors = predicted | "SelectCrops" >> SelectCrops(config=crop_config, focus=focus)
    rows, write_errors = cropped | "WriteCrops" >> WriteCrops(config=output, settings=settings_id(crop_config, output))
    return Cropped(rows, (decode_errors, inference_errors, crop_errors, write_errors))


class GazeCrop(beam.PTransform):
    """The whole batch job, applied to a pipeline's root: its inputs matched (and, incremental, the
    unchanged ones skipped), read, cropped by the chain (`crop_sources`), and both tables written whole.
    Returns `(metadata_rows, error_rows)`.

    Args:
      patterns: input globs/URIs; listed_uris: the URIs of an --input_list.
      model_info: the model (`gazecrop.transforms.inference.describe_model`).
      crop_config: the crop search (aspect ratios, candidates, min_scale, ...).
      focus: the --focus table, `{source URI: Focus}` (`gazecrop.transforms.select.resolve_focus_table`);
        empty = no hints.
      output: how and where crops and tables are written.
      batch_size: most images per model call.
      max_megapixels: decompression-bomb guard.
      max_input_bytes: larger input files are refused before they are read (0: no limit).
      handler: the ModelHandler; default `DeepGazeModelHandler(model_info, max_batch_size=batch_size)`.
      incremental: skip the images the tables under `output.root` already hold for this model and these
        settings, and keep their rows (`gazecrop.transforms.incremental`).
      incremental_check: how `incremental` knows a file is unchanged: "mtime" (size, time, gs://
        generation) or "content" (also the SHA-256 of files without a generation).
      progress_path: a local file that gets one byte per image accounted for (`gazecrop.pipeline.progress`).
    """

    def __init__(self, *, patterns: list[str], listed_uris: list[str] = (), model_info: ModelInfo,
                 crop_config: CropConfig, focus: Mapping[str, Focus] | None = None,
                 output: OutputConfig, batch_size: int = 16,
                 max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
                 max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
                 handler: DeepGazeModelHandler | None = None, incremental: bool = False,
                 incremental_check: str = "mtime", progress_path: str | None = None):
        super().__init__()
        self._patterns = list(patterns)
        self._listed_uris = list(listed_uris)
        self._model_info = model_info
        self._crop_config = crop_config
        self._focus = focus or {}  # a FocusTable keeps its rows as written, for the unmatched-rows log
        self._output = output
        self._max_megapixels = max_megapixels
        self._max_input_bytes = max_input_bytes
        self._handler = handler or DeepGazeModelHandler(model_info, max_batch_size=batch_size)
        self._incremental = incremental
        self._incremental_check = incremental_check
        self._progress_path = progress_path
        self._settings = settings_id(crop_config, output)

    def expand(self, pbegin):
        matched, match_errors = pbegin | "MatchImages" >> MatchImages(
            patterns=self._patterns, listed_uris=self._listed_uris, output_root=self._output.root)
        matched = matched | "ListGenerations" >> ListGenerations()
        kept_rows, kept_errors, skipped = [], [], []
        if self._incremental:
            matched, old_rows, old_errors, done = matched | "SkipUnchanged" >> SkipUnchanged(
                root=self._output.root, model_version=self._model_info.version, settings=self._settings,
                focus=self._focus, check=self._incremental_check)
            kept_rows, kept_errors, skipped = [old_rows], [old_errors], [done]
        sources, read_errors = matched | "ReadImages" >> ReadMatchedFiles(max_input_bytes=self._max_input_bytes)
        if self._focus:
            _ = sources | "LogUnmatchedFocusRows" >> LogUnmatchedFocusRows(focus=self._focus)
        cropped = crop_sources(sources, model_info=self._model_info, handler=self._handler,
                               crop_config=self._crop_config, focus=self._focus, output=self._output,
                               max_megapixels=self._max_megapixels)
        rows = cropped.rows
        errors = (match_errors, read_errors, *cropped.errors) | "AllErrors" >> beam.Flatten()
        table_rows = (rows, *kept_rows) | "TableRows" >> beam.Flatten()
        table_errors = (errors, *kept_errors) | "TableErrors" >> beam.Flatten()
        _ = table_rows | "WriteMetadata" >> WriteTable(
            root=self._output.root, name="metadata", schema=METADATA_SCHEMA)
        _ = table_errors | "WriteErrors" >> WriteTable(root=self._output.root, name="errors", schema=ERRORS_SCHEMA)
        if self._progress_path:
            # Ticked branch by branch, not after a Flatten: a runner may run a Flatten's consumer only once
            # every input is complete, and the bar would jump to the end.
            first_ratio = ratio_label(self._crop_config.aspect_ratios[0])
            one_row_per_image = rows | "OneRowPerImage" >> beam.Filter(
                lambda row: row["rank"] == 0 and row["aspect_ratio"] == first_ratio)
            accounted = [one_row_per_image, match_errors, read_errors, *cropped.errors, *skipped]
            for i, done in enumerate(accounted):
                _ = done | f"Progress{i}" >> Tick(self._progress_path)
        return rows, errors
