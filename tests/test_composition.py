"""Composition of real crops (issue 17): the default model and search on fixture photos, through `gazecrop.crop`.

What a crop should do is stated on the model's own map: a *subject* is a connected region where the predicted
density is at least 10% of the map's peak (a face, a bird's head), its box read in source pixels. Upright
portraits cropped to 16:9 must leave room above the face's subject (`CropConfig.headroom_weight`); the two
parrots of kodim23 must not both be cut by the 9:16 and 4:5 crops (not reached yet: see the model card,
"Composition").

And on the faces the default model's face prior finds (`CropConfig.face_weight`, model card "Composition: face
boxes"): the astronaut's 16:9 crop keeps her whole head, hair included, where the map ends at her forehead;
kodim04's face is taller than a 16:9 crop of it, so the crop keeps the face down to the chin and cuts above it.

A few seconds on CPU: one prediction per photo for the map, one inside `gazecrop.crop` (the model loads once).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

import gazecrop
from gazecrop.decode import decode_for_model
from gazecrop.model.predict import load_cached, predict_log_densities, predict_with_faces
from gazecrop.search import CropConfig, crop_images

pytestmark = pytest.mark.e2e

SUBJECT_LEVEL = 0.1        # share of the map's peak density that outlines a subject
MIN_ROOM = 0.04            # room above the face's subject, as a share of the crop's height (11 px of 288)


@functools.lru_cache(maxsize=None)
def subjects(path):
    """The default model's subjects of one photo, largest mass first: boxes (x0, y0, x1, y1) in source pixels,
    the first one holding the map's peak."""
    loaded = load_cached("default")
    model_input = decode_for_model(path.read_bytes(), input_size=loaded.input_size)
    log_density = predict_log_densities(loaded, [model_input.pixels])[0]
    density = np.exp(log_density - log_density.max())
    count, labels, stats, _ = cv2.connectedComponentsWithStats((density >= SUBJECT_LEVEL).astype(np.uint8),
                                                               connectivity=8)
    sx = model_input.source_width / density.shape[1]
    sy = model_input.source_height / density.shape[0]
    mass = [density[labels == k].sum() for k in range(1, count)]
    peak = labels[np.unravel_index(np.argmax(density), density.shape)]
    order = sorted(range(1, count), key=lambda k: (k != peak, -mass[k - 1]))
    return [(stats[k, 0] * sx, stats[k, 1] * sy, (stats[k, 0] + stats[k, 2]) * sx, (stats[k, 1] + stats[k, 3]) * sy)
            for k in order]


@pytest.mark.parametrize("photo", ["kodak/kodim04.png", "skimage/astronaut.png"])
def test_portrait_16x9_crop_leaves_room_above_the_face(fixtures_dir, photo):
    # Before the head room term the 16:9 crop's top edge ran through the face's subject (kodim04: 2 px inside
    # it, the hat cut; the astronaut: 4 px above it, the hair cut).
    path = fixtures_dir / photo
    face = subjects(path)[0]
    crop = gazecrop.crop(path, aspect_ratios="16:9")["16:9"]
    assert crop.y > 0                                 # the portrait leaves the 16:9 crop room to move
    room = face[1] - crop.y
    assert room >= MIN_ROOM * crop.height, (crop, face)
    assert crop.y + crop.height >= face[3] - 0.5 * (face[3] - face[1])   # the face is not traded away


@pytest.mark.xfail(strict=True, reason="open (issue 17): every crop-cut term measured that keeps the parrots "
                                       "whole costs val gain; see the model card, 'Composition'")
@pytest.mark.parametrize("ratio", ["9:16", "4:5"])
def test_parrot_crops_keep_one_bird_whole(fixtures_dir, ratio):
    path = fixtures_dir / "kodak/kodim23.png"
    birds = subjects(path)[:2]
    assert len(birds) == 2 and (birds[0][2] <= birds[1][0] or birds[1][2] <= birds[0][0])   # side by side
    crop = gazecrop.crop(path, aspect_ratios=ratio)[ratio]
    whole = [crop.x <= x0 and x1 <= crop.x + crop.width for x0, _, x1, _ in birds]
    assert any(whole), (crop, birds)


@functools.lru_cache(maxsize=None)
def predicted(path):
    """The default model's map of one photo, the faces its face prior found and the source size (width, height):
    what the pipeline's crop stage gets."""
    loaded = load_cached("default")
    model_input = decode_for_model(path.read_bytes(), input_size=loaded.input_size)
    maps, faces = predict_with_faces(loaded, [model_input.pixels])
    return maps[0], faces[0], (model_input.source_width, model_input.source_height)


def face_and_head(path):
    """The best face's box and its head box (the face extended upward by `CropConfig.face_head` of its height,
    clipped to the picture), (x0, y0, x1, y1) in source pixels."""
    _, faces, (width, height) = predicted(path)
    assert len(faces) >= 1
    x0, y0, x1, y1 = faces[0, :4] * [width, height, width, height]
    return (x0, y0, x1, y1), (x0, max(0.0, y0 - CropConfig().face_head * (y1 - y0)), x1, y1)


def crop_16x9(path, **config):
    log_density, faces, size = predicted(path)
    found = crop_images([log_density], [size], CropConfig(aspect_ratios="16:9", **config), faces=[faces])[0]
    return found.crops[0]


def test_astronaut_16x9_crop_keeps_her_whole_head(fixtures_dir):
    # The map ends at her forehead; the face box, extended upward for the hair, says where the head ends.
    path = fixtures_dir / "skimage/astronaut.png"
    face, head = face_and_head(path)
    crop = gazecrop.crop(path, aspect_ratios="16:9")["16:9"]
    assert crop.y <= head[1] + 1 and crop.y + crop.height >= face[3], (crop, head)   # to the pixel
    same = crop_16x9(path)                         # the search on the map and faces the crop stage gets
    assert crop.box == (same.x, same.y, same.width, same.height)
    off = crop_16x9(path, face_weight=0.0)
    assert off.y > head[1] + 20, (off, head)       # without the face boxes the crop clips her hair (y 52)


def test_kodim04_16x9_crop_keeps_the_face_and_cuts_above_it(fixtures_dir):
    # Her face box is taller than any 16:9 crop of the portrait: the crop keeps its lower part, down to the chin.
    path = fixtures_dir / "kodak/kodim04.png"
    face, _ = face_and_head(path)
    crop = gazecrop.crop(path, aspect_ratios="16:9")["16:9"]
    assert face[3] - face[1] > crop.height
    assert face[1] <= crop.y and crop.y + crop.height >= face[3] - 1, (crop, face)
