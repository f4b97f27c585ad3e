"""Inference stage: RunInference with a DeepGaze ModelHandler, batched by input shape.

**Batching by shape.** The model keeps each image's aspect ratio: its input has a fixed short side and a
long side rounded to a multiple of 16 (`SaliencyModel.input_size`), so a catalog of photos has only a
handful of input shapes (3:2, 4:3, 1:1, 16:9 ... each in landscape and portrait). Beam's
`BatchElements` makes batches of up to `--batch_size` images regardless of shape; `run_inference` groups
a batch's images by shape and makes one model call per shape group, so nothing is padded or distorted.
(The model's compiled function takes any (B, h, w, 3), so a new shape costs no retracing.)

**One model per worker.** `share_model_across_processes()` is True: Beam loads the model once per
worker machine and every SDK process of that machine calls it through a proxy
(`apache_beam.utils.multi_process_shared`), so a machine with N processes holds one copy of the weights
(one GPU memory footprint where a GPU is present: TensorFlow places the model there itself).
Through that proxy only the model's methods are reachable (`predict`, `describe`), never its
attributes; what the pipeline needs to know about the model (version, short side) comes from
`ModelInfo`, read once when the pipeline is built.

**Model swap while running (streaming).** RunInference's model side input (`model_metadata_pcoll`, e.g.
Beam's `WatchFilePattern`) hands the handler a new readout weights path: `update_model_path` records
it, RunInference reloads the model under that path's tag, and from then on every result carries the new
model's version, asked once per path from the loaded model itself (`SaliencyModel.describe`, a method,
so it works through the proxy). A model whose input short side differs from the one the decode stage
resizes for is refused: every image of such a batch becomes an error row at stage `inference`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, RunInference

from transforms.records import DecodedImage, SaliencyImage, dead_letter_rows


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
        from model.loading import input_size
        return input_size(height, width, self.short_side)


# TensorFlow otherwise reserves nearly all GPU memory in the first process that touches the GPU (here
# the launcher, which loads the model to learn its version); growing on demand lets the worker that
# serves the model have the rest.
TF_ENV_VARS = {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}


@functools.lru_cache(maxsize=2)
def load_cached(spec: str) -> Any:
    """`model.load_model(spec)`, once per process: where the pipeline is built and where it runs are
    the same process (the DirectRunner in-process), the model describe_model loaded is reused."""
    for name, value in TF_ENV_VARS.items():
        os.environ.setdefault(name, value)
    from model import load_model
    return load_model(spec)


def describe_model(spec: str) -> ModelInfo:
    """Load the model once (where the pipeline is built) and keep what the stages need to know."""
    loaded = load_cached(str(spec))
    return ModelInfo(spec=str(spec), version=loaded.version, short_side=int(loaded.short_side))


InferenceFn = Callable[[Any, Sequence[DecodedImage], str], Iterable[SaliencyImage]]


def group_by_shape_of(arrays: Sequence[np.ndarray]) -> dict[tuple, list[int]]:
    """Indices of `arrays` grouped by shape, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, array in enumerate(arrays):
        groups.setdefault(array.shape, []).append(i)
    return groups


def predict_by_shape(model: Any, images: Sequence[DecodedImage], model_version: str) -> list[SaliencyImage]:
    """Default inference function: one `model.predict` call per input shape; results in input order."""
    results: list[SaliencyImage | None] = [None] * len(images)
    for indices in group_by_shape_of([image.pixels for image in images]).values():
        batch = np.stack([images[i].pixels for i in indices]).astype(np.float32)
        log_density = np.asarray(model.predict(batch), dtype=np.float32)
        for row, i in enumerate(indices):
            image = images[i]
            results[i] = SaliencyImage(
                uri=image.uri, relpath=image.relpath, data=image.data, sha256=image.sha256,
                source_width=image.source_width, source_height=image.source_height,
                log_density=log_density[row], model_version=model_version, modified_us=image.modified_us)
    return results


class DeepGazeModelHandler(ModelHandler[DecodedImage, SaliencyImage, Any]):
    """ModelHandler for gazecrop's DeepGaze model (`model.load_model`).

    Args:
      model_info: the model to load (`ModelInfo.spec`) and its version, written into every result.
      inference_fn: `(model, images, model_version) -> results`; replaceable (tests, other devices).
      min_batch_size, max_batch_size: bounds for Beam's BatchElements.
      max_batch_duration_secs: flush a partial batch after this long (streaming only). Beam's
        BatchElements then buffers in a stateful DoFn keyed per worker process, with a processing-time
        timer: a lone image waits at most this long for company.
    """

    def __init__(self, model_info: ModelInfo, *, inference_fn: InferenceFn = predict_by_shape,
                 min_batch_size: int = 1, max_batch_size: int = 16,
                 max_batch_duration_secs: int | None = None):
        super().__init__(env_vars=dict(TF_ENV_VARS))
        self._model_info = model_info
        self._inference_fn = inference_fn
        self._batching = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
        if max_batch_duration_secs is not None:
            self._batching["max_batch_duration_secs"] = max_batch_duration_secs
        self._model_path = ""  # set by the model side input; "" = model_info.spec
        self._versions: dict[str, str] = {}  # model path -> version, asked once per path

    def update_model_path(self, model_path: str | None = None) -> None:
        """RunInference's model side input names a new readout weights file (or "" / None: no newer file
        than the one the job started with, so keep `model_info.spec`)."""
        if model_path:
            self._model_path = model_path

    def current_spec(self) -> str:
        """What `load_model` loads now: the side input's latest path, else the job's --model."""
        return self._model_path or self._model_info.spec

    def load_model(self) -> Any:
        return load_cached(self.current_spec())

    def model_version(self, model: Any) -> str:
        """The version written into results: `model_info.version` for the job's own model; for a
        swapped-in file, the loaded model's own (asked through `describe`, once per path), after
        checking that it takes the input size the decode stage produces."""
        spec = self.current_spec()
        if spec == self._model_info.spec:
            return self._model_info.version
        if spec not in self._versions:
            described = model.describe()
            if int(described["short_side"]) != self._model_info.short_side:
                raise ValueError(f"model {spec} has input short side {described['short_side']}, the job "
                                 f"decodes for {self._model_info.short_side} (model {self._model_info.spec}); "
                                 f"a swapped model must keep the input short side")
            self._versions[spec] = str(described["version"])
        return self._versions[spec]

    def run_inference(self, batch: Sequence[DecodedImage], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[SaliencyImage]:
        return self._inference_fn(model, batch, self.model_version(model))

    def get_metrics_namespace(self) -> str:
        return "gazecrop_inference"

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return dict(self._batching)

    def share_model_across_processes(self) -> bool:
        return True


class PredictSaliency(beam.PTransform):
    """RunInference over decoded images. Returns `(saliency_images, error_rows)`.

    `model_metadata_pcoll`: optional RunInference model side input (`ModelMetadata` whose `model_id`
    is a readout weights path), e.g. `apache_beam.ml.inference.utils.WatchFilePattern`, to swap the model
    while a streaming job runs.
    """

    def __init__(self, handler: DeepGazeModelHandler, *, model_metadata_pcoll=None):
        super().__init__()
        self._handler = handler
        self._model_metadata_pcoll = model_metadata_pcoll

    def expand(self, images):
        inference = RunInference(self._handler, model_metadata_pcoll=self._model_metadata_pcoll)
        predicted, failed = images | "RunInference" >> inference.with_exception_handling()
        errors = failed.failed_inferences | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="inference")
        return predicted, errors
