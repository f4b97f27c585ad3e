"""The saliency network: shapes, normalisation, weight loading and its errors, images.

Most tests use the tiny model (seeded random weights, no files); one runs the bundled trained
model on a real photo. Fixtures come from ../shared next to the repository.
"""

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from gazecrop.model import WeightsError, load_model
from gazecrop.model.images import ImageReadError, read_image_rgb
from gazecrop.model.saliency import logsumexp, resize_log_density

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "data" / "fixtures"


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def _batch(b, h, w, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (b, h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("h, w", [(224, 224), (224, 304), (304, 224), (64, 160)])
def test_tiny_predict_is_a_log_density(tiny, h, w):
    out = tiny.predict(_batch(2, h, w))
    assert out.shape == (2, h, w) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(logsumexp(out, axis=(1, 2)), 0.0, atol=1e-4)


def test_tiny_is_deterministic_and_fast(tiny):
    import time

    x = _batch(4, 224, 304)
    first = tiny.predict(x)
    start = time.perf_counter()
    second = tiny.predict(x)
    assert time.perf_counter() - start < 0.3
    np.testing.assert_array_equal(first, second)
    assert load_model("tiny").version == tiny.version


def test_version_is_stable_across_processes(tiny):
    # The tiny weights come from a seeded numpy generator, so the hash is the same in every
    # process and on every machine; it changes only when the network or its config changes.
    assert tiny.version == "78c78667b41b"
    assert len(tiny.version) == 12 and int(tiny.version, 16) >= 0


def test_attributes(tiny):
    assert tiny.name == "tiny"
    assert tiny.short_side == 224
    assert tiny.keras_model.output_shape == (None, None, None)


@pytest.mark.parametrize("size, expected", [
    ((768, 1024), (224, 304)),
    ((1024, 768), (304, 224)),
    ((512, 512), (224, 224)),
    ((512, 768), (224, 336)),
    ((1080, 1920), (224, 400)),
    ((50, 5000), (224, 896)),  # long side capped at 4 × the short side
    ((300, 250), (272, 224)),
])
def test_input_size(tiny, size, expected):
    h, w = tiny.input_size(*size)
    assert (h, w) == expected
    assert h % 16 == 0 and w % 16 == 0 and min(h, w) == tiny.short_side


def test_predict_rejects_bad_shapes(tiny):
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny.predict(_batch(1, 100, 224))
    with pytest.raises(ValueError, match=r"Received: batch.shape=\(224, 224, 3\)"):
        tiny.predict(_batch(1, 224, 224)[0])


def test_missing_readout_file_names_the_file(tmp_path):
    path = tmp_path / "nope.weights.h5"
    with pytest.raises(WeightsError, match=f"{re.escape(str(path))}.*not found.*gazecrop.tools.train"):
        load_model(str(path))


def test_foreign_readout_file_names_the_file(tmp_path):
    path = tmp_path / "foreign.weights.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(WeightsError, match=f"{re.escape(str(path))} is not a gazecrop-readout file"):
        load_model(str(path))


def test_mismatched_readout_file_names_layer_and_shapes(tmp_path):
    path = tmp_path / "bad.weights.h5"
    with h5py.File(model_file(), "r") as src, h5py.File(path, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        src.copy(src["layers"], dst, "layers")
        del dst["layers/readout_conv2/0"]
        dst["layers/readout_conv2/0"] = np.zeros((1, 1, 7, 16), np.float32)
    with pytest.raises(WeightsError, match=r"bad.weights.h5: layer readout_conv2 has shapes "
                                           r"\[\(1, 1, 7, 16\), \(16,\)\], the network expects "
                                           r"\[\(1, 1, 32, 16\), \(16,\)\]"):
        load_model(str(path))


def test_mismatched_body_file_names_the_file(tmp_path):
    path = tmp_path / "hed.weights.h5"
    with h5py.File(path, "w") as f:
        f["block1/layers/conv2d/vars/0"] = np.zeros((3, 3, 3, 32), np.float32)
        f["block1/layers/conv2d/vars/1"] = np.zeros((32,), np.float32)
    with pytest.raises(WeightsError, match=rf"{re.escape(str(path))}: block1/layers/conv2d/vars has shapes .*"
                                           rf"block1_conv1 expects \[\(3, 3, 3, 64\), \(64,\)\]"):
        load_model(str(model_file()), body_weights=path)


def test_wrong_backbone_is_refused():
    with pytest.raises(WeightsError, match="trained on backbone 'hed'.*Received: backbone='imagenet'"):
        load_model(str(model_file()), backbone="imagenet")


def model_file():
    from gazecrop.model.loading import BUNDLED

    return BUNDLED["default"]


def test_default_model_on_a_real_photo():
    model = load_model("default")
    rgb = read_image_rgb(FIXTURES / "kodak" / "kodim04.png")  # 512×768 portrait of a woman
    size = model.input_size(*rgb.shape[:2])
    from gazecrop.model.images import resize_for_model

    out = model.predict(resize_for_model(rgb, size)[None])[0]
    assert out.shape == size and np.isfinite(out).all()
    np.testing.assert_allclose(logsumexp(out), 0.0, atol=1e-4)
    full = resize_log_density(out, rgb.shape[:2])
    np.testing.assert_allclose(logsumexp(full), 0.0, atol=1e-5)
    # The face (upper middle of the photo) is far more salient than the bottom corners.
    h, w = full.shape
    kh, kw = h // 6, w // 6
    face = logsumexp(full[kh: h // 2, w // 4: 3 * w // 4])
    corners = logsumexp(np.concatenate([full[h - kh:, :kw], full[h - kh:, w - kw:]]))
    assert face > corners + 2.0
    assert len(model.version) == 12 and model.name == "default"


def test_resize_log_density_keeps_normalisation():
    rng = np.random.default_rng(1)
    ld = rng.normal(size=(14, 19))
    for size in [(224, 304), (7, 9), (1000, 3)]:
        out = resize_log_density(ld, size)
        assert out.shape == size and out.dtype == np.float32
        np.testing.assert_allclose(logsumexp(out), 0.0, atol=1e-5)
    # A uniform density stays uniform.
    flat = resize_log_density(np.zeros((4, 4)), (8, 12))
    np.testing.assert_allclose(flat, -np.log(96), atol=1e-6)


def test_read_image_rgb_applies_exif_orientation():
    folder = FIXTURES / "exif_orientation"
    for kind in ("Landscape", "Portrait"):
        ref = read_image_rgb(folder / f"{kind}_1.jpg").astype(np.int16)
        for i in range(2, 9):
            img = read_image_rgb(folder / f"{kind}_{i}.jpg")
            assert img.shape == ref.shape and img.dtype == np.uint8
            assert np.abs(img - ref).mean() < 8  # the same picture up to JPEG noise


def test_read_image_rgb_errors(tmp_path):
    with pytest.raises(ImageReadError, match="missing.jpg"):
        read_image_rgb(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg: the file is empty"):
        read_image_rgb(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageReadError, match="text.jpg: not a recognised image format"):
        read_image_rgb(tmp_path / "text.jpg")
