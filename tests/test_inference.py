"""Inference stage (transforms/inference.py): shape grouping and the ModelHandler, with the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from gazecrop.transforms.inference import DeepGazeModelHandler, predict_by_shape
from gazecrop.records import DecodedImage, group_by_shape_of


class RecordingModel:
    """The tiny model, recording the shape of every predict call."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def predict(self, batch):
        self.calls.append(batch.shape)
        return self.model.predict(batch)


@pytest.fixture(scope="module")
def tiny_model():
    from gazecrop.model import load_model
    return load_model("tiny")


def _image(name, h, w, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return DecodedImage(uri=f"/in/{name}", relpath=name, data=b"", sha256="", source_width=w,
                        source_height=h, pixels=pixels)


def test_group_by_shape_keeps_first_seen_order():
    arrays = [np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((2, 3))]
    assert group_by_shape_of(arrays) == {(2, 3): [0, 2], (3, 2): [1]}


def test_one_model_call_per_shape_and_results_in_input_order(tiny_model):
    images = [_image("a", 224, 336, 0), _image("b", 336, 224, 1), _image("c", 224, 336, 2)]
    model = RecordingModel(tiny_model)
    results = predict_by_shape(model, images, "v1")
    assert model.calls == [(2, 224, 336, 3), (1, 336, 224, 3)]
    assert [r.uri for r in results] == ["/in/a", "/in/b", "/in/c"]
    assert [r.log_density.shape for r in results] == [(224, 336), (336, 224), (224, 336)]
    for r in results:
        flat = r.log_density.astype(np.float64).ravel()
        assert abs(np.log(np.exp(flat - flat.max()).sum()) + flat.max()) < 1e-3  # logsumexp == 0
        assert r.model_version == "v1"
    alone = predict_by_shape(tiny_model, [images[2]], "v1")[0]
    np.testing.assert_allclose(alone.log_density, results[2].log_density, atol=1e-4)


def test_handler_options(tiny_info):
    handler = DeepGazeModelHandler(tiny_info, max_batch_size=4)
    assert handler.share_model_across_processes()
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 4}
    assert handler.get_metrics_namespace() == "gazecrop_inference"
    model = handler.load_model()
    results = list(handler.run_inference([_image("a", 224, 224, 0)], model))
    assert results[0].model_version == tiny_info.version and len(tiny_info.version) == 12


def test_model_info_input_size_is_the_models_rule(tiny_info, tiny_model):
    for h, w in [(768, 512), (512, 768), (1, 1), (100, 5000), (3000, 4000)]:
        assert tiny_info.input_size(h, w) == tiny_model.input_size(h, w)
