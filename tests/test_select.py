"""Crop stage (transforms/select.py) on plain functions: ranks kept, focus rows resolved to source URIs
when the job is built and looked up by URI, focus rows that name no input file."""

from __future__ import annotations

import numpy as np
import pytest

from gazecrop.search import CropConfig, Focus, choose_crops
from gazecrop.transforms.focus import FocusRow, FocusTableError
from gazecrop.records import SaliencyImage, SourceFile
from gazecrop.transforms.select import (focus_key, focus_keys_found, resolve_focus_table, select_crops,
                                        unmatched_focus_keys)


def _image(uri, relpath, width, height, seed):
    ld = np.random.default_rng(seed).normal(size=(24, 36)).astype(np.float32)
    return SaliencyImage(uri=uri, relpath=relpath, data=b"", sha256="s", source_width=width,
                         source_height=height, log_density=ld, model_version="v")


def _rows(*keys):
    return [FocusRow(key, Focus(i, i), f"f.csv row {i + 2}") for i, key in enumerate(keys)]


def test_relative_focus_keys_become_source_uris_under_the_input_root():
    table = resolve_focus_table(_rows("gs://b/in/a.jpg", "sub/c.jpg", "caf\u0065\u0301 100%.jpg", "/abs/y.jpg"),
                                ["gs://b/in/"])
    assert dict(table.rows) == {"gs://b/in/a.jpg": ("gs://b/in/a.jpg",), "sub/c.jpg": ("gs://b/in/sub/c.jpg",),
                                "caf\u0065\u0301 100%.jpg": ("gs://b/in/caf\u00e9 100%.jpg",),
                                "/abs/y.jpg": ("/abs/y.jpg",)}
    assert focus_key(table, "gs://b/in/a.jpg") == "gs://b/in/a.jpg"
    assert focus_key(table, "gs://b/in/sub/c.jpg") == "gs://b/in/sub/c.jpg"
    assert focus_key(table, "gs://b/in/cafe\u0301 100%.jpg") == "gs://b/in/caf\u00e9 100%.jpg"  # NFD name, NFC key
    assert focus_key(table, "gs://b/other/a.jpg") is None and focus_key(table, "gs://b/in/c.jpg") is None


def test_focus_keys_under_several_roots_and_rows_naming_one_image_twice():
    roots = ["gs://b/xa/", "gs://b/xb/"]
    # Under one root only: that one file; under neither: both candidates (logged if still unmatched).
    table = resolve_focus_table(_rows("a.jpg", "n.jpg"), roots, exists=lambda uri: uri == "gs://b/xb/a.jpg")
    assert dict(table.rows) == {"a.jpg": ("gs://b/xb/a.jpg",), "n.jpg": ("gs://b/xa/n.jpg", "gs://b/xb/n.jpg")}
    with pytest.raises(FocusTableError, match=r"f.csv row 2: 'a.jpg' names a file under 2 input roots"):
        resolve_focus_table(_rows("a.jpg"), roots, exists=lambda uri: True)
    with pytest.raises(FocusTableError, match=r"f.csv row 2 \('a.jpg'\) and f.csv row 3 \('gs://b/xa/a.jpg'\)"):
        resolve_focus_table(_rows("a.jpg", "gs://b/xa/a.jpg"), roots[:1])


def test_select_crops_keeps_every_rank_and_applies_focus():
    images = [_image("/in/a.png", "a.png", 1200, 400, 1), _image("/in/b.png", "b.png", 1200, 400, 2),
              _image("/in/c.png", "c.png", 400, 600, 3)]
    config = CropConfig(aspect_ratios=((1, 1), (9, 16)), candidates=3)
    plain = select_crops(images, config)
    for item in plain:
        labels = [c.aspect_ratio for c in item.crops]
        assert labels == sorted(labels, key=["1:1", "9:16"].index)   # ratio order, ranks after each other
        for label in ("1:1", "9:16"):
            assert [c.rank for c in item.crops if c.aspect_ratio == label][0] == 0
    assert max(sum(c.aspect_ratio == "9:16" for c in item.crops) for item in plain) == 3
    focused = select_crops(images, config, {"/in/a.png": Focus(1190, 5), "/in/b.png": Focus(0, 390, 10, 10)})
    assert all(c.x <= 1190 < c.x + c.width and c.y <= 5 < c.y + c.height for c in focused[0].crops)
    assert all(c.x == 0 and c.y + c.height >= 400 for c in focused[1].crops)
    assert focused[2] == plain[2]                                    # no focus row: the model decides


def test_focus_rows_naming_no_input():
    table = resolve_focus_table(_rows("gs://b/in/a.jpg", "b.jpg", "nowhere.jpg"), ["gs://b/in/"])
    keys = frozenset(table)
    # Found by URI, whatever the output name (here disambiguated) is.
    assert focus_keys_found(SourceFile("gs://b/in/a.jpg", "a.jpg%=0123", b""), keys=keys) == ["gs://b/in/a.jpg"]
    assert focus_keys_found(SourceFile("gs://b/in/b.jpg", "b.jpg", b""), keys=keys) == ["gs://b/in/b.jpg"]
    assert unmatched_focus_keys({"gs://b/in/a.jpg", "gs://b/in/b.jpg"}, rows=table.rows) == ["nowhere.jpg"]
    assert unmatched_focus_keys(set(), rows=table.rows) == ["b.jpg", "gs://b/in/a.jpg", "nowhere.jpg"]


def test_the_faces_of_a_saliency_image_reach_the_crop_search():
    # The inference stage hands on the faces the model's face prior found; the crop search keeps them whole.
    image = _image("/in/p.jpg", "p.jpg", 600, 900, seed=5)
    face = np.array([[0.3, 0.55, 0.7, 0.65, 0.9]], np.float32)   # cut by the plain crop (y 530)
    config = CropConfig(aspect_ratios=((16, 9),), face_limit=1.0)
    with_faces = select_crops([image._replace(faces=face)], config)[0].crops
    assert with_faces == tuple(choose_crops(image.log_density[None], [(600, 900)], config, faces=[face])[0])
    assert select_crops([image], config)[0].crops == tuple(choose_crops(image.log_density[None], [(600, 900)],
                                                                        config)[0])
    assert with_faces != select_crops([image], config)[0].crops
