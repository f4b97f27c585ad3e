"""Numpy helpers for log-density maps: normalise, resize, centre-bias priors."""

import cv2
import numpy as np


def logsumexp(a, axis=None, keepdims=False):
    """Stable ``log(sum(exp(a)))`` over ``axis`` (float64 accumulation)."""
    a = np.asarray(a, dtype=np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def normalize_log_density(log_density):
    """Shifts a (h, w) or (B, h, w) log map so each map's logsumexp is 0. Returns float32."""
    a = np.asarray(log_density, dtype=np.float64)
    axes = (-2, -1)
    return (a - logsumexp(a, axis=axes, keepdims=True)).astype(np.float32)


def resize_log_density(log_density, size):
    """Resizes a (h, w) log-density to ``size = (H, W)``, keeping it a log-density.

    The density (not its log) is resized bilinearly (area-averaged when shrinking), renormalised
    to sum to 1, and its log returned as float32 with ``logsumexp == 0``.
    """
    log_density = np.asarray(log_density)
    if log_density.ndim != 2:
        raise ValueError(f"log_density must be a 2-D (h, w) map. Received: log_density.shape={log_density.shape}")
    height, width = (int(s) for s in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be two positive ints (H, W). Received: size={size!r}")
    shift = float(np.max(log_density))
    density = np.exp(log_density.astype(np.float64) - shift).astype(np.float32)
    shrinking = height * width < density.shape[0] * density.shape[1]
    resized = cv2.resize(density, (width, height),
                         interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    resized = np.maximum(resized.astype(np.float64), 1e-30)
    return (np.log(resized) - np.log(resized.sum())).astype(np.float32)


def fit_centre_bias(xs, ys, widths, heights, *, grid=64, bandwidth=0.05, uniform_weight=0.01):
    """Fits a centre-bias log-density on a (grid, grid) lattice in normalised coordinates.

    Each fixation (x, y) in an image of size (width, height) counts at (x / width, y / height);
    the histogram is smoothed with a Gaussian of ``bandwidth`` (fraction of the side), mixed with
    a uniform density (weight ``uniform_weight``) and normalised so the lattice cells sum to 1.
    """
    u = np.clip(np.asarray(xs, np.float64) / np.asarray(widths, np.float64), 0.0, 1.0 - 1e-9)
    v = np.clip(np.asarray(ys, np.float64) / np.asarray(heights, np.float64), 0.0, 1.0 - 1e-9)
    hist = np.zeros((grid, grid), np.float64)
    np.add.at(hist, ((v * grid).astype(int), (u * grid).astype(int)), 1.0)
    sigma = bandwidth * grid
    hist = cv2.GaussianBlur(hist, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    density = hist / hist.sum()
    density = (1.0 - uniform_weight) * density + uniform_weight / density.size
    return np.log(density).astype(np.float32)


def centre_bias_log_density(log_prior, size):
    """The centre-bias lattice resampled to an image of ``size = (H, W)`` as a log-density.

    Bilinear in the log domain, exactly like the model's ``CentreBias`` layer, then normalised.
    """
    height, width = (int(s) for s in size)
    grid = log_prior.shape[0]

    def matrix(n):
        pos = np.clip((np.arange(n) + 0.5) * (grid / n) - 0.5, 0.0, grid - 1.0)
        return np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(grid)[None, :]))

    log_map = matrix(height) @ log_prior.astype(np.float64) @ matrix(width).T
    return normalize_log_density(log_map)
