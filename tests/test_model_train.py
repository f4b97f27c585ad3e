"""Training helpers: fixations mapped to model pixels (and mirrored), batches of equal shapes, several datasets."""

import argparse
import json

import numpy as np
import pytest

from gazecrop.tools.data import Fixations
from gazecrop.tools.train import (TrainingData, batches, choose_centre_bias, dataset_labels, load_dataset,
                                  make_samples)


class FakeCache:
    """Stands in for FeatureCache: a 224-short-side geometry and features that record the call."""

    def input_size(self, height, width):
        return (224, 304) if width > height else (304, 224)

    def load(self, name, flipped, layers):
        h, w = self.input_size(*SIZES[name])
        return np.full((h // 16, w // 16, 2), 1.0 if flipped else 0.0, np.float16)


SIZES = {"a.jpg": (768, 1024), "b.jpg": (1024, 768)}
FIX = {"a.jpg": Fixations(x=np.array([0.0, 1023.9, 512.0]), y=np.array([0.0, 767.9, 384.0]),
                          subject=np.zeros(3, int)),
       "b.jpg": Fixations(x=np.array([100.0]), y=np.array([900.0]), subject=np.zeros(1, int))}


def test_make_samples_scales_and_mirrors_fixations():
    samples = make_samples(FakeCache(), ["a.jpg", "b.jpg"], FIX, SIZES, ["x"], flips=True)
    assert [(s.name, s.flipped) for s in samples] == [
        ("a.jpg", False), ("a.jpg", True), ("b.jpg", False), ("b.jpg", True)]
    a, a_flip, b, _ = samples
    assert a.size == (224, 304)
    np.testing.assert_array_equal(a.rows, [0, 223, 112])
    np.testing.assert_array_equal(a.cols, [0, 303, 152])
    np.testing.assert_array_equal(a_flip.cols, [303, 0, 151])
    np.testing.assert_array_equal(b.rows, [int(900 * 304 / 1024)])
    counts = a.counts()
    assert counts.shape == (224, 304) and counts.sum() == 3
    assert a_flip.features[0, 0, 0] == 1.0 and a.features[0, 0, 0] == 0.0


def test_batches_hold_one_shape_each_and_cover_all_samples():
    samples = make_samples(FakeCache(), ["a.jpg", "b.jpg"] * 5, FIX, SIZES, ["x"], flips=True)
    out = batches(samples, 3, np.random.default_rng(0))
    assert sum(len(b) for b in out) == len(samples)
    for b in out:
        assert len({s.features.shape for s in b}) == 1 and len(b) <= 3


class FakeDatasetCache(FakeCache):
    """A FakeCache that the per-dataset view and the fill step leave as it is."""

    def for_dataset(self, dataset_dir):
        return self

    def fill(self, *args, **kwargs):
        pass


def write_dataset(root, name, fixations):
    """A dataset folder whose train split is a.jpg and val split b.jpg (sizes pre-cached, no pixels)."""
    folder = root / name
    (folder / "splits").mkdir(parents=True)
    (folder / "splits" / "train.txt").write_text("a.jpg\n")
    (folder / "splits" / "val.txt").write_text("b.jpg\n")
    rows = [f"{image},0,{i},{x},{y},200" for image, points in fixations.items() for i, (x, y) in enumerate(points)]
    (folder / "fixations.csv").write_text("image,subject,index,x,y,duration_ms\n" + "\n".join(rows) + "\n")
    (root / "cache" / f"sizes-{name}.json").write_text(json.dumps({"a.jpg": SIZES["a.jpg"], "b.jpg": SIZES["b.jpg"]}))
    return folder


def test_union_of_datasets_keys_samples_by_dataset_and_chooses_on_the_mean(tmp_path):
    (tmp_path / "cache").mkdir()
    one = write_dataset(tmp_path, "one", {"a.jpg": [(512, 384)] * 3, "b.jpg": [(384, 512)] * 2})
    two = write_dataset(tmp_path, "two", {"a.jpg": [(10, 10), (1000, 700)], "b.jpg": [(700, 1000)]})
    args = argparse.Namespace(features=["x"], max_train=0, flips=False, cache_dir=tmp_path / "cache")
    labels = dataset_labels([one, two])
    data = TrainingData([load_dataset(FakeDatasetCache(), d, label, args, lambda _: None)
                         for d, label in zip([one, two], labels)])
    assert labels == ["one", "two"] and data.train_images == 2
    assert [s.key for s in data.train_samples] == [("one", "a.jpg"), ("two", "a.jpg")]
    assert [len(s.rows) for s in data.train_samples] == [3, 2]
    ll, _, prior, per_dataset = choose_centre_bias(data.datasets, 16, lambda _: None)
    assert prior.shape == (16, 16) and ll == pytest.approx(np.mean(per_dataset))
    with pytest.raises(ValueError, match="distinct names"):
        dataset_labels([one, tmp_path / "x" / "one"])
