"""The bundled fast model (``load_model("fast")``): loads offline, its geometry, its output, its cost."""

import re
from pathlib import Path

import numpy as np
import pytest

from gazecrop.model import WeightsError, load_model
from gazecrop.tools.model_bench import multiply_adds
from gazecrop.model.loading import BUNDLED
from gazecrop.model.saliency import logsumexp


@pytest.fixture(scope="module")
def fast():
    return load_model("fast")


def _batch(b, h, w, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (b, h, w, 3)).astype(np.float32)


def test_fast_loads_from_its_own_file(fast):
    assert fast.name == "fast" and fast.short_side == 128
    assert re.fullmatch(r"[0-9a-f]{12}", fast.version)
    assert fast.config["backbone"] == "in-file"           # the pruned body is in the file
    assert BUNDLED["fast"].stat().st_size < 5_000_000      # committed small
    assert fast.keras_model.get_layer("block1_conv1").filters < 64


@pytest.mark.parametrize("source, size", [((1000, 1000), (128, 128)), ((768, 1024), (128, 176)),
                                          ((1024, 768), (176, 128)), ((300, 2000), (128, 512))])
def test_fast_input_sizes_and_log_density(fast, source, size):
    assert fast.input_size(*source) == size
    out = fast.predict(_batch(2, *size))
    assert out.shape == (2, *size) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(logsumexp(out, axis=(1, 2)), 0.0, atol=1e-4)
    assert not np.allclose(out[0], out[0].mean())          # not a flat map


def test_fast_differs_from_default_and_is_cheaper(fast):
    default = load_model("default")
    assert fast.version != default.version
    fast_cost = multiply_adds(fast, 128, 128)
    assert fast_cost < 1.2e9
    assert multiply_adds(default, 224, 224) > 10 * fast_cost
    assert fast.keras_model.count_params() < default.keras_model.count_params() / 5


def test_fast_refuses_another_body():
    with pytest.raises(WeightsError, match="in-file"):
        load_model("fast", backbone="hed")


def test_pruning_keeps_exactly_the_chosen_feature_maps():
    # Pruning = the full network with the other maps switched off: zero their kernels and biases
    # in the full network (ReLU keeps them 0) and both give the same output.
    from gazecrop.model import network
    from gazecrop.tools.train_fast import FEATURES, prune

    full = network.deepgaze(features=FEATURES, short_side=64)
    rng = np.random.default_rng(0)
    for layer in full.layers:
        if layer.name.startswith("block") and "_conv" in layer.name:
            k, b = layer.get_weights()
            layer.set_weights([rng.normal(0, np.sqrt(2 / (9 * k.shape[2])), k.shape).astype(np.float32),
                               rng.uniform(0, 0.1, b.shape).astype(np.float32)])
    norm = full.get_layer("readout_norm")
    norm.set_weights([rng.normal(0, 1, norm.mean.shape).astype(np.float32),
                      rng.uniform(0.5, 2, norm.std.shape).astype(np.float32)])
    widths = (4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
    scores = {name: rng.random(w) for name, w in zip(network.VGG16_CONVS, network.VGG16_WIDTHS)}
    small = prune(full, scores, widths, 64)

    for name, w in zip(network.VGG16_CONVS, widths):
        layer = full.get_layer(name)
        k, b = layer.get_weights()
        drop = np.argsort(scores[name])[::-1][w:]
        k[..., drop], b[drop] = 0.0, 0.0
        layer.set_weights([k, b])
    x = _batch(1, 64, 96)
    np.testing.assert_allclose(np.asarray(small(x)), np.asarray(full(x)), rtol=1e-4, atol=1e-3)
    assert small.get_layer("block3_conv2").filters == 9


def test_train_fast_defaults_to_the_default_models_data_and_float32():
    from gazecrop.tools.data import BUNDLED_DATASETS
    from gazecrop.tools.train_fast import parse_args

    args = parse_args([])
    assert args.dataset == list(BUNDLED_DATASETS) and args.precision == "float32"
    assert parse_args(["--dataset", "a", "b"]).dataset == [Path("a"), Path("b")]


def test_bfloat16_training_copy_computes_the_body_in_bfloat16_and_shares_the_weights():
    # Training under --precision mixed_bfloat16 runs on a copy: body in bfloat16, readout and finaliser in
    # float32 (a log-softmax in bfloat16 would round the loss), weights float32 and the same as the model's.
    from gazecrop.model import network
    from gazecrop.tools.train_fast import FEATURES, training_copy

    widths = (4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8)
    km = network.deepgaze(body_widths=widths, features=FEATURES, short_side=64)
    copy = training_copy(km, "mixed_bfloat16")
    assert copy.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert copy.get_layer("block4_pool").compute_dtype == "bfloat16"
    assert copy.get_layer("readout_conv1").compute_dtype == "float32"
    assert copy.get_layer("log_density").compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in copy.weights)
    for a, b in zip(km.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = _batch(1, 64, 96)
    out = np.asarray(copy(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(logsumexp(out, axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out, np.asarray(km(x)), atol=0.1)
