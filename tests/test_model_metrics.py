"""Saliency metrics against small cases computed by hand."""

import numpy as np
import pytest

from gazecrop.tools import metrics
from gazecrop.model.saliency import centre_bias_log_density, fit_centre_bias, logsumexp


def test_log_likelihood_and_information_gain_by_hand():
    # 2×2 image; the model puts 1/2 on pixel (0, 0), 1/6 on each other pixel.
    model = np.log(np.array([[1 / 2, 1 / 6], [1 / 6, 1 / 6]]))
    uniform = np.log(np.full((2, 2), 1 / 4))
    rows, cols = np.array([0, 0, 1]), np.array([0, 0, 1])
    # log2(0.5 * 4) = 1 bit, twice; log2(4 / 6) once.
    expected = [1.0, 1.0, np.log2(4 / 6)]
    np.testing.assert_allclose(metrics.log_likelihoods(model, rows, cols), expected)
    np.testing.assert_allclose(metrics.information_gain(model, uniform, rows, cols), expected)
    # Mean over fixations: (2 + log2(2/3)) / 3.
    assert np.mean(metrics.information_gain(model, uniform, rows, cols)) == pytest.approx(
        (2 + np.log2(2 / 3)) / 3)
    assert np.all(metrics.information_gain(model, model, rows, cols) == 0)


def test_nss_by_hand():
    s = np.array([[0.0, 1.0], [2.0, 5.0]])  # mean 2, std sqrt((4 + 1 + 0 + 9) / 4) = sqrt(3.5)
    values = metrics.nss(s, np.array([1, 0]), np.array([1, 0]))
    np.testing.assert_allclose(values, [3 / np.sqrt(3.5), -2 / np.sqrt(3.5)])
    assert np.all(metrics.nss(np.ones((3, 3)), np.array([0]), np.array([2])) == 0)
    # Invariant to scaling and shifting the map.
    np.testing.assert_allclose(metrics.nss(3 * s + 7, np.array([1]), np.array([1])), values[:1])


def test_auc_judd_by_hand():
    s = np.array([[4.0, 3.0], [2.0, 1.0]])
    # One fixation on the 3: negatives 4, 2, 1; one of three is >= 3.
    # ROC (0,0) → (1/3, 1) → (1, 1): area 1/6 + 2/3 = 5/6.
    assert metrics.auc_judd(s, np.array([0]), np.array([1])) == pytest.approx(5 / 6)
    # Fixations on the 4 and the 1: negatives 3, 2.
    # thresholds 4 → (0, 1/2), 1 → (1, 1): area 1/2·0 + (1/2 + 1)/2·1 = 3/4.
    assert metrics.auc_judd(s, np.array([0, 1]), np.array([0, 1])) == pytest.approx(3 / 4)
    # Perfect and worst maps.
    assert metrics.auc_judd(s, np.array([0]), np.array([0])) == pytest.approx(1.0)
    assert metrics.auc_judd(s, np.array([1]), np.array([1])) == pytest.approx(0.5)
    # A fixation repeated on the same pixel counts twice but does not change a single-pixel ROC.
    assert metrics.auc_judd(s, np.array([0, 0]), np.array([1, 1])) == pytest.approx(5 / 6)


def test_auc_judd_constant_map_is_chance_with_jitter():
    s = np.zeros((40, 40))
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 40, 200), rng.integers(0, 40, 200)
    assert metrics.auc_judd(s, rows, cols) == pytest.approx(0.5, abs=0.06)


def test_cc_by_hand():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert metrics.cc(a, 2 * a + 1) == pytest.approx(1.0)
    assert metrics.cc(a, -a) == pytest.approx(-1.0)
    b = np.array([[1.0, 0.0], [0.0, 1.0]])  # a - 2.5 = [-1.5, -.5, .5, 1.5]; b - .5 = [.5, -.5, -.5, .5]
    # cov = (-.75 + .25 - .25 + .75) / 4 = 0
    assert metrics.cc(a, b) == pytest.approx(0.0)
    c = np.array([[0.0, 0.0], [0.0, 1.0]])  # c - 1/4 = [-1/4, -1/4, -1/4, 3/4]
    # sum (a - 2.5)(c - .25) = (.375 + .125 - .125 + 1.125) = 1.5; |a| = sqrt(5), |c| = sqrt(.75)
    assert metrics.cc(a, c) == pytest.approx(1.5 / np.sqrt(5 * 0.75))
    assert metrics.cc(np.ones((2, 2)), a) == 0.0


def test_blurred_fixation_map():
    m = metrics.blurred_fixation_map(np.array([5, 5]), np.array([5, 5]), (11, 11), sigma=2.0)
    assert m.shape == (11, 11)
    assert np.unravel_index(np.argmax(m), m.shape) == (5, 5)
    assert m.sum() == pytest.approx(2.0, rel=2e-2)  # a little mass blurs off the border
    np.testing.assert_allclose(m, m.T)


def test_saliency_map_to_log_density():
    ld = metrics.saliency_map_to_log_density(np.array([[0.0, 1.0], [1.0, 2.0]]), uniform_weight=0.2)
    # density = 0.8 · [0, 1/4, 1/4, 1/2] + 0.05
    np.testing.assert_allclose(np.exp(ld), [[0.05, 0.25], [0.25, 0.45]])


def test_spectral_residual_shape_and_response():
    noise = np.random.default_rng(0).normal(128, 20, (96, 128, 1))
    rgb = np.clip(noise, 0, 255).repeat(3, axis=2).astype(np.uint8)
    rgb[40:56, 90:106] = 255  # one bright square on a textured background
    s = metrics.spectral_residual(rgb)
    assert s.shape == (96, 128)
    assert s[48, 98] > 3 * np.median(s)
    r, c = np.unravel_index(np.argmax(s), s.shape)
    assert 32 <= r < 64 and 82 <= c < 114


def test_centre_bias_fit_is_a_centred_log_density():
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(512, 100, 5000), rng.normal(384, 80, 5000)
    prior = fit_centre_bias(xs, ys, np.full(5000, 1024), np.full(5000, 768), grid=32)
    ld = centre_bias_log_density(prior, (768, 1024))
    assert ld.shape == (768, 1024)
    assert logsumexp(ld) == pytest.approx(0.0, abs=1e-5)
    r, c = np.unravel_index(np.argmax(ld), ld.shape)
    assert abs(r - 384) < 40 and abs(c - 512) < 40
    # The same prior serves other aspect ratios (normalised coordinates).
    tall = centre_bias_log_density(prior, (1024, 768))
    r, c = np.unravel_index(np.argmax(tall), tall.shape)
    assert abs(r - 512) < 50 and abs(c - 384) < 40
