"""Inference stage: RunInference with a DeepGaze ModelHandler, batched by input shape.

**Batching by shape.** The model keeps each image's aspect ratio: its input has a fixed short side and a
long side rounded to a multiple of 16 (`SaliencyModel.input_size`), so a catalog of photos has only a
handful of input shapes (3:2, 4:3, 1:1, 16:9 ... each in landscape and portrait). Beam's
`BatchElements` makes batches of up to `--batch_size` images regardless of shape; `run_inference` groups
a batch's images by shape and makes one model call per shape group, so nothing is padded or distorted.
(The model's compiled function takes any (B, h, w, 3), so a new shape costs no retracing.)

**One model per worker.** `share_model_across_processes()` is True by default: Beam loads the model
once per worker machine and every SDK process of that machine calls it through a proxy
(`apache_beam.utils.multi_process_shared`), so a machine with N processes holds one copy of the weights
(one GPU memory footprint where a GPU is present: TensorFlow places the model there itself).
Through that proxy only the model's methods are reachable (`predict`), never its
attributes; what the pipeline needs to know about the model (version, short side) comes from
`ModelInfo`, read once when the pipeline is built from the weights file's attributes (`describe_model`:
h5py, no TensorFlow, so a Dataflow or Flink submitter needs neither TensorFlow nor the body weights). Each
worker checks that the model it loads is that version. A job that runs in one process (the streaming
DirectRunner) passes `share_across_processes=False`: there the proxy only costs, and as that runner
calls `setup` for every bundle, it made a proxy per bundle, and the garbage collector's clean-up of old
ones deadlocked Beam's in-process proxy server after ~5,000 images (`py-spy`: the server's accepter
thread blocked in `BaseProxy._decref`, connecting to itself).

**Model swap while running (streaming).** With a `ModelWatch` (--watch_model_pattern) the handler
looks for a newer readout weights file before each batch and, when one appears, runs every later batch
on it; every result carries the version of the model that made it. A model whose input short side
differs from the one the decode stage resizes for is refused: every image of such a batch becomes an
error row at stage `inference`. (Why the handler watches rather than RunInference's model side input:
see `DeepGazeModelHandler`.)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, RunInference

from gazecrop.model.predict import TF_ENV_VARS, load_cached, predict_with_faces
from gazecrop.records import DecodedImage, SaliencyImage
from gazecrop.transforms.dead_letters import dead_letter_rows

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a model without holding it: picklable, a few bytes.

    `spec` is what `model.load_model` takes ("default", "tiny" or a weights path).
    """
    spec: str
    version: str
    short_side: int

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The model's input (h, w) for a source of (height, width): the model's own rule, which
        depends only on `short_side` (tests/test_inference.py checks it against a loaded model)."""
        from gazecrop.model.card import input_size
        return input_size(height, width, self.short_side)


def describe_model(spec: str, *, before_loading: Callable[[], None] | None = None) -> ModelInfo:
    """What the stages need to know about the model, where the pipeline is built: read from its weights
    file's attributes (`gazecrop.model.card`: h5py, no TensorFlow) for "default", "fast" and files that
    record their version; otherwise (the seeded "tiny" test model, older files) by loading the model once,
    after calling `before_loading` (it takes seconds). Raises `WeightsError` for a missing or foreign file."""
    from gazecrop.model.card import read_card
    card = read_card(str(spec))
    if card is not None:
        return ModelInfo(spec=str(spec), version=card.version, short_side=card.short_side)
    if before_loading is not None:
        before_loading()
    loaded = load_cached(str(spec))
    return ModelInfo(spec=str(spec), version=loaded.version, short_side=int(loaded.short_side))


InferenceFn = Callable[[Any, Sequence[DecodedImage], str], Iterable[SaliencyImage]]


def predict_by_shape(model: Any, images: Sequence[DecodedImage], model_version: str) -> list[SaliencyImage]:
    """Default inference function: `gazecrop.model.predict.predict_with_faces` (one model call per input
    shape, uint8 batches) over the images' model inputs; results in input order, each with its map and the
    faces the model's face prior found (None without one), which the crop stage keeps whole."""
    log_densities, faces = predict_with_faces(model, [image.pixels for image in images])
    return [SaliencyImage(uri=image.uri, relpath=image.relpath, data=image.data, sha256=image.sha256,
                          source_width=image.source_width, source_height=image.source_height,
                          log_density=log_density, model_version=model_version, modified_us=image.modified_us,
                          generation=image.generation, faces=found)
            for image, log_density, found in zip(images, log_densities, faces)]


@dataclasses.dataclass(frozen=True)
class ModelWatch:
    """--watch_model_pattern: swap in the newest readout weights file matching `pattern` that was
    modified after `since` (epoch seconds: when the job was built), looking at most every
    `interval_secs`. Upload each new model under a new name, whole (a copy then a rename, or one
    object write): a file is loaded as soon as it is seen."""
    pattern: str
    interval_secs: float = 60.0
    since: float = 0.0

    def newest(self) -> str | None:
        """The newest matching file modified after `since`, or None."""
        files = [m for m in FileSystems.match([self.pattern])[0].metadata_list
                 if (m.last_updated_in_seconds or 0) > self.since and not m.path.endswith("/")]
        if not files:
            return None
        return max(files, key=lambda m: (m.last_updated_in_seconds, m.path)).path


class DeepGazeModelHandler(ModelHandler[DecodedImage, SaliencyImage, Any]):
    """ModelHandler for gazecrop's DeepGaze model (`model.load_model`).

    Args:
      model_info: the model to load (`ModelInfo.spec`) and its version, written into every result.
      inference_fn: `(model, images, model_version) -> results`; replaceable (tests, other devices).
      min_batch_size, max_batch_size: bounds for Beam's BatchElements.
      max_batch_duration_secs: flush a partial batch after this long (streaming only). Beam's
        BatchElements then buffers in a stateful DoFn keyed per worker process, with a processing-time
        timer: a lone image waits at most this long for company.
      watch: swap the model while the job runs (`ModelWatch`; streaming jobs).
      share_across_processes: one model per machine behind a proxy (see the module docstring); False
        where the job runs in one process.

    **Swapping the model.** Beam's own route, a RunInference model side input fed by
    `WatchFilePattern`, never delivers an update on the runners this project can test: Flink's portable
    runner reads a global-window side input once, and Beam 2.77's Python DirectRunner holds the main
    input until such a side input is complete, i.e. forever. So the handler watches the pattern itself,
    before each batch (at most every `interval_secs`), the same way on every runner: when a newer file
    appears, each worker process loads it (its own copy, beside the shared job model) and every result
    from then on carries that model's version.
    """

    def __init__(self, model_info: ModelInfo, *, inference_fn: InferenceFn = predict_by_shape,
                 min_batch_size: int = 1, max_batch_size: int = 16,
                 max_batch_duration_secs: int | None = None, watch: ModelWatch | None = None,
                 share_across_processes: bool = True):
        super().__init__(env_vars=dict(TF_ENV_VARS))
        self._share_across_processes = share_across_processes
        self._model_info = model_info
        self._inference_fn = inference_fn
        self._batching = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
        if max_batch_duration_secs is not None:
            self._batching["max_batch_duration_secs"] = max_batch_duration_secs
        self._watch = watch
        self._swapped = ""  # the watched file in use ("" = the job's model)
        self._next_look = 0.0  # monotonic time of the next look at the watched pattern

    def load_model(self) -> Any:
        """The job's model; refused when it is not the version the job was built for (every row carries
        that version): a weights file stamped elsewhere than it runs, e.g. with another VGG16 body."""
        model = load_cached(self._model_info.spec)
        if model.version != self._model_info.version:
            raise ValueError(f"model {self._model_info.spec} loads as version {model.version}, the job was built "
                             f"for version {self._model_info.version} (recorded in the weights file); record "
                             f"the version this installation computes: python -m gazecrop.model.card --stamp FILE")
        return model

    def swapped_model(self) -> str:
        """The watched file whose model this worker now uses, "" for the job's own model; looks at the
        pattern first when `interval_secs` has passed since the last look."""
        if self._watch and time.monotonic() >= self._next_look:
            self._next_look = time.monotonic() + self._watch.interval_secs
            newest = self._watch.newest()
            if newest and newest != self._swapped:
                swapped = load_cached(newest)
                if int(swapped.short_side) != self._model_info.short_side:
                    raise ValueError(f"model {newest} has input short side {swapped.short_side}, the job "
                                     f"decodes for {self._model_info.short_side} (model {self._model_info.spec});"
                                     f" a swapped model must keep the input short side")
                _LOGGER.info("Swapped in model %s (version %s)", newest, swapped.version)
                self._swapped = newest
        return self._swapped

    def run_inference(self, batch: Sequence[DecodedImage], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[SaliencyImage]:
        swapped = self.swapped_model()
        if swapped:
            model = load_cached(swapped)
            return self._inference_fn(model, batch, model.version)
        return self._inference_fn(model, batch, self._model_info.version)

    def get_metrics_namespace(self) -> str:
        return "gazecrop_inference"

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return dict(self._batching)

    def share_model_across_processes(self) -> bool:
        return self._share_across_processes


class PredictSaliency(beam.PTransform):
    """RunInference over decoded images. Returns `(saliency_images, error_rows)`."""

    def __init__(self, handler: DeepGazeModelHandler):
        super().__init__()
        self._handler = handler

    def expand(self, images):
        predicted, failed = images | "RunInference" >> RunInference(self._handler).with_exception_handling()
        errors = failed.failed_inferences | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="inference")
        return predicted, errors
