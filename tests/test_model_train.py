"""Training helpers: fixations mapped to model pixels (and mirrored), batches of equal shapes."""

import numpy as np

from gazecrop.tools.data import Fixations
from gazecrop.tools.train import batches, make_samples


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
