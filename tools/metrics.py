"""Saliency metrics, as pysaliency defines them, on one image at a time.

Fixations are integer pixel indices ``(rows, cols)`` (pysaliency truncates float coordinates).
A model is a log-density ``(H, W)`` at the stimulus resolution; its saliency map for NSS, AUC and
CC is the density ``exp(log_density)`` (the metrics that rank pixels do not care which).

How the per-image values are averaged over a dataset (pysaliency's defaults):

- information gain and NSS: over all fixations (``average="fixation"``);
- AUC (Judd) and CC: over images.
"""

import cv2
import numpy as np

LN2 = np.log(2.0)


def log_likelihoods(log_density, rows, cols):
    """Per-fixation log-likelihood in bits relative to a uniform density over the image."""
    height, width = log_density.shape
    return (log_density[rows, cols].astype(np.float64) + np.log(height * width)) / LN2


def information_gain(log_density, baseline_log_density, rows, cols):
    """Per-fixation information gain over a baseline model, in bits per fixation."""
    if log_density.shape != baseline_log_density.shape:
        raise ValueError(f"the two log-densities must have the same shape. Received: "
                         f"{log_density.shape} and {baseline_log_density.shape}")
    return (log_density[rows, cols].astype(np.float64)
            - baseline_log_density[rows, cols].astype(np.float64)) / LN2


def nss(saliency_map, rows, cols):
    """Per-fixation normalised scanpath saliency: the map standardised (mean 0, std 1, ddof 0),
    read at each fixation. A constant map scores 0."""
    s = saliency_map.astype(np.float64)
    std = s.std()
    values = s[rows, cols] - s.mean()
    return values / std if std else values


def auc_judd(saliency_map, rows, cols, *, jitter=True, seed=42):
    """AUC (Judd) of one image: fixated pixels against all unfixated pixels.

    The ROC curve is drawn with one threshold per fixation's saliency value (each fixation is a
    positive, repeats included); the negatives are every pixel no fixation fell on. ``jitter``
    adds uniform noise of 1e-7 × the map's range (seeded) so that ties are broken at random, as
    pysaliency's ``AUC_Judd`` does.
    """
    s = saliency_map.astype(np.float64)
    if jitter:
        span = float(s.max() - s.min()) or 1.0
        s = s + np.random.default_rng(seed).random(s.shape) * 1e-7 * span
    fixated = np.zeros(s.shape, bool)
    fixated[rows, cols] = True
    positives = np.sort(s[rows, cols])
    negatives = np.sort(s[~fixated])
    if positives.size == 0 or negatives.size == 0:
        return np.nan
    # One ROC point per threshold t (the fixated values, highest first): the share of
    # positives and of negatives with saliency >= t.
    thresholds = positives[::-1]
    tp = (positives.size - np.searchsorted(positives, thresholds, side="left")) / positives.size
    fp = (negatives.size - np.searchsorted(negatives, thresholds, side="left")) / negatives.size
    tp = np.concatenate([[0.0], tp, [1.0]])
    fp = np.concatenate([[0.0], fp, [1.0]])
    return float(np.trapezoid(tp, fp))


def cc(saliency_map, other_map):
    """Pearson correlation of two maps of the same shape (0 when one is constant)."""
    if saliency_map.shape != other_map.shape:
        raise ValueError(f"the maps must have the same shape. Received: "
                         f"{saliency_map.shape} and {other_map.shape}")
    a = saliency_map.astype(np.float64).ravel()
    b = other_map.astype(np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator else 0.0


def blurred_fixation_map(rows, cols, shape, sigma):
    """Empirical saliency map: fixation counts blurred by a Gaussian of ``sigma`` pixels."""
    counts = np.zeros(shape, np.float64)
    np.add.at(counts, (rows, cols), 1.0)
    return cv2.GaussianBlur(counts, (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_CONSTANT)


def saliency_map_to_log_density(saliency_map, uniform_weight=0.05):
    """Turns an uncalibrated saliency map into a log-density, for IG of classic models.

    The map is shifted to be non-negative, normalised, and mixed with a uniform density
    (``uniform_weight``) so that no pixel has zero probability.
    """
    s = saliency_map.astype(np.float64)
    s = s - s.min()
    total = s.sum()
    density = s / total if total else np.full(s.shape, 1.0 / s.size)
    density = (1.0 - uniform_weight) * density + uniform_weight / s.size
    return np.log(density)


def spectral_residual(rgb, *, width=64, blur_sigma=2.5):
    """Spectral-residual saliency (Hou & Zhang, CVPR 2007) of a uint8 RGB image, same size.

    The grey image is shrunk to ``width`` pixels across; the log amplitude spectrum minus its
    3×3 local mean (the spectral residual) is recombined with the phase, transformed back,
    squared, blurred and resized to the image. (OpenCV's ``cv2.saliency`` is in the contrib
    build only, so it is computed here.)
    """
    height_in, width_in = rgb.shape[:2]
    height = max(1, round(width * height_in / width_in))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    phase = np.angle(spectrum)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3), borderType=cv2.BORDER_REPLICATE)
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    saliency = cv2.GaussianBlur(saliency, (0, 0), blur_sigma)
    return cv2.resize(saliency.astype(np.float32), (width_in, height_in),
                      interpolation=cv2.INTER_LINEAR)
