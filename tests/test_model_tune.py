"""A low-rank change of the body's kernels (``gazecrop.tools.tune``): stored in the readout file, applied at load."""

import h5py
import numpy as np
import pytest

from gazecrop.model import loading
from gazecrop.model.loading import BODY_DELTA_KEY, WeightsError, load_model, save_readout


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def write_with_delta(model, path, delta, rank):
    config = {**model.config, BODY_DELTA_KEY: {"layers": sorted(delta), "rank": rank}}
    save_readout(model.keras_model, config, path, body_delta=delta, stamp=False)


def test_a_delta_in_the_file_changes_the_kernel_at_load_and_the_version(default_model, tmp_path):
    rng = np.random.default_rng(0)
    kernel, bias = default_model.keras_model.get_layer("block5_conv3").get_weights()
    a = rng.normal(0, 0.05, (3 * 3 * 512, 2)).astype(np.float16)
    b = rng.normal(0, 0.05, (2, 512)).astype(np.float16)
    path = tmp_path / "tuned.weights.h5"
    write_with_delta(default_model, path, {"block5_conv3": (a, b)}, 2)

    tuned = load_model(path)
    new_kernel, new_bias = tuned.keras_model.get_layer("block5_conv3").get_weights()
    np.testing.assert_allclose(new_kernel, kernel + loading.delta_kernel(a, b, kernel.shape), atol=1e-6)
    assert np.abs(new_kernel - kernel).max() > 1e-3
    np.testing.assert_array_equal(new_bias, bias)
    for name in ("block5_conv2", "readout_conv1"):
        for old, new in zip(default_model.keras_model.get_layer(name).get_weights(),
                            tuned.keras_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(old, new)
    assert tuned.version != default_model.version

    x = np.random.default_rng(1).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    assert np.abs(tuned.predict(x) - default_model.predict(x)).max() > 1e-4


def test_a_zero_delta_gives_the_same_kernels(default_model, tmp_path):
    a = np.ones((3 * 3 * 512, 4), np.float16)
    path = tmp_path / "zero.weights.h5"
    write_with_delta(default_model, path, {"block5_conv1": (a, np.zeros((4, 512), np.float16))}, 4)
    tuned = load_model(path)
    for old, new in zip(default_model.keras_model.get_layer("block5_conv1").get_weights(),
                        tuned.keras_model.get_layer("block5_conv1").get_weights()):
        np.testing.assert_array_equal(old, new)


def test_a_missing_or_misshapen_delta_is_refused(default_model, tmp_path):
    path = tmp_path / "bad.weights.h5"
    write_with_delta(default_model, path, {"block5_conv3": (np.zeros((4608, 2)), np.zeros((2, 512)))}, 3)
    with pytest.raises(WeightsError, match="block5_conv3"):
        load_model(path)
    write_with_delta(default_model, path, {"block5_conv3": (np.zeros((4608, 2)), np.zeros((2, 512)))}, 2)
    with h5py.File(path, "a") as f:
        del f["layers/block5_conv3/delta/1"]
    with pytest.raises(WeightsError, match="lacks"):
        load_model(path)


def test_the_tuned_convolution_starts_as_the_body_s():
    """``tools.tune``'s LowRankConv with B = 0 computes block5_conv1 as Keras' Conv2D does (float32)."""
    import keras

    from gazecrop.tools.tune import low_rank_conv_layer

    rng = np.random.default_rng(2)
    kernel = rng.normal(0, 0.02, (3, 3, 8, 4)).astype(np.float32)
    bias = rng.normal(0, 0.1, 4).astype(np.float32)
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
    x = rng.normal(0, 1, (2, 5, 6, 8)).astype(np.float32)
    conv(x)
    conv.set_weights([kernel, bias])
    tuned = low_rank_conv_layer()(kernel, bias, 2)
    np.testing.assert_allclose(np.asarray(tuned(x)), np.asarray(conv(x)), atol=1e-5)
    assert [tuple(v.shape) for v in tuned.trainable_weights] == [(72, 2), (2, 4)]


def test_low_rank_delta_is_the_truncated_svd_of_the_change():
    from gazecrop.tools.train_fast import low_rank_delta

    rng = np.random.default_rng(2)
    base = rng.normal(0, 0.1, (3, 3, 8, 16)).astype(np.float32)
    change = (rng.normal(0, 0.1, (72, 2)) @ rng.normal(0, 0.1, (2, 16))).reshape(base.shape).astype(np.float32)
    a, b = low_rank_delta(base + change, base, 2)
    assert a.shape == (72, 2) and b.shape == (2, 16)
    np.testing.assert_allclose(loading.delta_kernel(a, b, base.shape), change, atol=1e-6)   # rank 2 is exact
    a, b = low_rank_delta(base + change, base, 20)      # more than the kernel's 16 outputs: zero-padded, exact
    assert a.shape == (72, 20) and b.shape == (20, 16)
    np.testing.assert_allclose(loading.delta_kernel(a, b, base.shape), change, atol=1e-6)
    a1, b1 = low_rank_delta(base + change, base, 1)
    residual = np.linalg.norm(change - loading.delta_kernel(a1, b1, base.shape))
    np.testing.assert_allclose(residual, np.linalg.svd(change.reshape(72, 16), compute_uv=False)[1], rtol=1e-4)


def test_a_whole_body_tune_stored_as_deltas_loads_as_it_was_scored(default_model, tmp_path):
    """``train_fast --no-prune --delta-rank R``: the tuned body written as the hed body plus a change of each of the
    13 kernels; the model loaded from the file is the one that was scored."""
    from gazecrop.model import network
    from gazecrop.tools.train_fast import full_width_student, store_as_delta

    km = full_width_student(default_model, 224)
    rng = np.random.default_rng(3)
    for name in ("block1_conv2", "block4_conv1"):   # a tuning's change, rank 1, and a bias moved
        kernel, bias = km.get_layer(name).get_weights()
        u, v = rng.normal(0, 0.02, (int(np.prod(kernel.shape[:3])), 1)), rng.normal(0, 0.02, (1, kernel.shape[3]))
        km.get_layer(name).set_weights([kernel + (u @ v).reshape(kernel.shape).astype(np.float32), bias + 0.01])
    delta = store_as_delta(km, 224, 32)   # block1_conv1 has 27 inputs: padded to the rank
    assert sorted(delta) == sorted(network.VGG16_CONVS)
    config = {**default_model.config, BODY_DELTA_KEY: {"layers": list(network.VGG16_CONVS), "rank": 32}}
    path = tmp_path / "whole.weights.h5"
    save_readout(km, config, path, body_delta=delta)   # stamps: loads the file

    from gazecrop.model.card import read_card
    loaded = load_model(path)
    assert read_card(path).version == loaded.version
    for name in network.VGG16_CONVS:
        for stored, scored in zip(loaded.keras_model.get_layer(name).get_weights(), km.get_layer(name).get_weights()):
            np.testing.assert_allclose(stored, scored, atol=1e-6)
    kernel = loaded.keras_model.get_layer("block4_conv1").get_weights()[0]
    assert np.abs(kernel - default_model.keras_model.get_layer("block4_conv1").get_weights()[0]).max() > 1e-3
    x = np.random.default_rng(4).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.keras_model(x), km(x), atol=1e-4)
    assert loaded.version != default_model.version
