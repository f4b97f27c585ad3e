"""Crop stage (transforms/select.py) on plain functions: ranks kept, focus looked up by URI or relpath,
focus rows that name no input file."""

from __future__ import annotations

import numpy as np

from transforms.crop import CropConfig, Focus
from transforms.records import SaliencyImage, SourceFile
from transforms.paths import safe_relpath
from transforms.select import (focus_key, focus_keys_found, rekey_focus_table, select_crops,
                               unmatched_focus_keys)


def _image(uri, relpath, width, height, seed):
    ld = np.random.default_rng(seed).normal(size=(24, 36)).astype(np.float32)
    return SaliencyImage(uri=uri, relpath=relpath, data=b"", sha256="s", source_width=width,
                         source_height=height, log_density=ld, model_version="v")


def test_focus_key_prefers_the_source_uri():
    table = {"gs://b/in/a.jpg": Focus(1, 2), "a.jpg": Focus(3, 4), "sub/c.jpg": Focus(5, 6)}
    assert focus_key(table, "gs://b/in/a.jpg", "a.jpg") == "gs://b/in/a.jpg"
    assert focus_key(table, "gs://b/other/a.jpg", "a.jpg") == "a.jpg"
    assert focus_key(table, "gs://b/in/sub/c.jpg", "sub/c.jpg") == "sub/c.jpg"
    assert focus_key(table, "gs://b/in/c.jpg", "c.jpg") is None


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
    focused = select_crops(images, config, {"/in/a.png": Focus(1190, 5), "b.png": Focus(0, 390, 10, 10)})
    assert all(c.x <= 1190 < c.x + c.width and c.y <= 5 < c.y + c.height for c in focused[0].crops)
    assert all(c.x == 0 and c.y + c.height >= 400 for c in focused[1].crops)
    assert focused[2] == plain[2]                                    # no focus row: the model decides


def test_focus_rows_naming_no_input():
    keys = frozenset({"gs://b/in/a.jpg", "b.jpg", "nowhere.jpg"})
    assert focus_keys_found(SourceFile("gs://b/in/a.jpg", "a.jpg", b""), keys=keys) == ["gs://b/in/a.jpg"]
    assert focus_keys_found(SourceFile("gs://b/in/b.jpg", "b.jpg", b""), keys=keys) == ["b.jpg"]
    assert unmatched_focus_keys({"gs://b/in/a.jpg", "b.jpg"}, keys=keys) == ["nowhere.jpg"]
    assert unmatched_focus_keys(set(), keys=keys) == sorted(keys)


def test_focus_keys_by_relative_path_follow_the_output_naming_rule():
    hint = Focus.coerce([1, 2])
    table = rekey_focus_table({"gs://b/x.jpg": hint, "/abs/y.jpg": hint, "-rf/caf\u0065\u0301 100%.jpg": hint})
    assert set(table) == {"gs://b/x.jpg", "/abs/y.jpg", safe_relpath("-rf/caf\u00e9 100%.jpg")}
    # the raw relative path a person writes now finds the image, whose relpath is the escaped one
    relpath = safe_relpath("-rf/caf\u00e9 100%.jpg")
    assert relpath != "-rf/caf\u00e9 100%.jpg"
    assert focus_key(table, "/in/-rf/caf\u00e9 100%.jpg", relpath) == relpath
