"""Crop selection: from a predicted log-density to one window per aspect ratio.

A crop keeps what people look at when it keeps the saliency mass: the model predicts a probability
density of fixations, so the density mass inside a window *is* the expected share of fixations the
window keeps. ``choose_crops`` therefore starts from the window that keeps the most mass and adds
optional, documented terms (``CropConfig``) to the score.

Steps of ``choose_crops`` (each a small function below):

1. ``_densities``       log-density (B, h, w) -> normalised density, and its summed-area tables (``_Tables``).
2. ``window_sizes``     per image, ratio and scale: the largest window of the ratio that fits the source.
3. ``_candidate_grid``  per window: a grid of candidate offsets on each axis (``_axis_positions``: ends,
                        centre; within the ``_focus_bounds``), every pair of them a candidate.
4. ``_score``           every candidate's mass, read from the SAT interpolated to source pixels, minus
                        the optional penalties (of which head room, ``headroom_weight``, and, for maps that
                        come with face boxes, the cut through a face's head, ``face_weight``, are on by
                        default).
5. ``_next_rank``       per rank: the best candidate (``_pick``, ties toward the image centre) among
                        those overlapping at most ``candidate_overlap`` with better ranks (``_suppress``),
                        then ``_refine``d on finer grids around it down to the pixel, then checked against
                        ``_exact_largest``: the best largest (scale-1) window over every pixel offset. With
                        one scale (the default ``min_scale = 1``) that exact search is the whole search.
6. ``_crops_of``        the chosen windows as ``Crop``s, later ranks sorted by score.

Everything is numpy over the batch, the ratios, the scales and the candidate positions; Python
loops only run over ranks (``candidates``), refinement passes (one or two), the exact search of the
largest windows (per image and ratio: their offsets differ in number) and, to build the results,
images x ratios.

Why the exact pass: grid and refinement move toward the best window but can miss it when the mass has
two peaks closer than a grid step (measured on random maps: about 1 window in 100 keeps up to 1e-4 less
mass than the best). The largest window of a ratio spans the source on one axis (up to the few pixels
of ``exact_ratio_slack``), so every offset of it is a one-dimensional slide: a few thousand scores at
most, as cheap as the grid. The crop is then the best window of its own map, to the pixel, for the
default ``min_scale = 1``; smaller scales keep the grid-and-refine search.

Geometry contract (DESIGN.md): pixel coordinates of the source after EXIF orientation; a crop is
integer ``(x, y, width, height)`` with ``0 <= x`` and ``x + width <= W`` (same for y), its ratio as close
to the target as integers allow, and never larger than the source.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np

from gazecrop.records import group_by_shape_of

Ratio = tuple[int, int]

DEFAULT_ASPECT_RATIOS: tuple[Ratio, ...] = ((1, 1), (16, 9), (9, 16), (4, 5))

# W:H, and the spellings people type: WxH (the output folders' own names), W/H; terms may be decimals.
_RATIO_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:xX/]\s*(\d+(?:\.\d+)?)\s*$")


def _whole_terms(width: str, height: str) -> Ratio:
    """Two decimal terms as the whole-number ratio they write: scaled by the same power of ten until
    both are whole, then reduced only by that scale (`1.91`, `1` -> 191:100; `1.5`, `1` -> 3:2;
    `16`, `9` -> 16:9, and whole terms are kept as written: `2:2` stays 2:2)."""
    decimals = max(len(t.partition(".")[2]) for t in (width, height))
    scale = 10 ** decimals
    a, b = round(float(width) * scale), round(float(height) * scale)
    g = math.gcd(math.gcd(a, b), scale)
    return a // g, b // g

# Limits of --aspect_ratios. A term up to 10000 writes any ratio to four digits (1.91:1 as 191:100,
# 1.618:1 as 1618:1000); a ratio past 100:1 (or 1:100) leaves a strip a few pixels wide of an ordinary
# photo; every ratio is one more crop file per image, so a list is at most 16 long.
MAX_RATIO_TERM = 10_000
MAX_RATIO_SPREAD = 100
MAX_ASPECT_RATIOS = 16


# ----------------------------------------------------------------------------------------------
# Aspect ratios
# ----------------------------------------------------------------------------------------------

def ratio_problem(a: int, b: int) -> Optional[str]:
    """Why ``a:b`` is not an aspect ratio gazecrop crops to, or None: both terms whole numbers in
    ``1..MAX_RATIO_TERM``, the ratio within ``1:MAX_RATIO_SPREAD .. MAX_RATIO_SPREAD:1``."""
    if not (1 <= a <= MAX_RATIO_TERM and 1 <= b <= MAX_RATIO_TERM):
        return f"both terms must be whole numbers 1..{MAX_RATIO_TERM}"
    if a > MAX_RATIO_SPREAD * b or b > MAX_RATIO_SPREAD * a:
        return f"the ratio must be within 1:{MAX_RATIO_SPREAD}..{MAX_RATIO_SPREAD}:1"
    return None


def parse_aspect_ratios(text: Union[str, Sequence[str]], *, name: Optional[str] = None) -> tuple[Ratio, ...]:
    """Parses ``"1:1,16:9,9:16,4:5"`` into ``((1, 1), (16, 9), (9, 16), (4, 5))``.

    Each ratio is two numbers ``W:H``, also written ``WxH`` (an output folder's name) or ``W/H``; decimal
    terms become whole numbers (``1.91:1`` -> ``(191, 100)``, labelled ``191:100``; ``_whole_terms``), whose
    range ``ratio_problem`` gives; a list of such strings is accepted too, at most ``MAX_ASPECT_RATIOS``
    ratios. Raises ``ValueError`` naming the bad part for anything else (empty text, ``0:1``, ``16-9``,
    ``1000:1``, the same ratio twice); with ``name`` (an argument's name) the message ends
    ``Received: name=...``, else ``Received: ...``.
    """
    received = f"{name}={text!r}" if name else repr(text)
    if isinstance(text, str):
        parts = text.split(",")
    else:
        parts = [p for item in text for p in str(item).split(",")]
    if not parts or all(not p.strip() for p in parts):
        raise ValueError(f"No aspect ratio given; expected e.g. '1:1,16:9'. Received: {received}")
    ratios: list[Ratio] = []
    seen: dict[Ratio, str] = {}
    for part in parts:
        match = _RATIO_RE.match(part)
        if not match:
            raise ValueError(
                f"Bad aspect ratio {part.strip()!r}: expected WIDTH:HEIGHT such as 16:9, 16x9, 16/9 or "
                f"1.91:1. Received: {received}")
        a, b = _whole_terms(match.group(1), match.group(2))
        problem = ratio_problem(a, b)
        if problem:
            raise ValueError(f"Bad aspect ratio {part.strip()!r}: {problem}. Received: {received}")
        g = math.gcd(a, b)
        reduced = (a // g, b // g)
        if reduced in seen:
            raise ValueError(f"Aspect ratio {part.strip()!r} repeats {seen[reduced]!r}. "
                             f"Received: {received}")
        seen[reduced] = part.strip()
        ratios.append((a, b))
    if len(ratios) > MAX_ASPECT_RATIOS:
        raise ValueError(f"{len(ratios)} aspect ratios: at most {MAX_ASPECT_RATIOS} (each is one more crop "
                         f"file per image). Received: {received}")
    return tuple(ratios)


def ratio_label(ratio: Ratio) -> str:
    """``(16, 9) -> "16:9"``: the value of the ``aspect_ratio`` column."""
    return f"{int(ratio[0])}:{int(ratio[1])}"


def ratio_dirname(ratio: Ratio) -> str:
    """``(16, 9) -> "16x9"``: the folder of a ratio's crops under ``ROOT/crops/``."""
    return f"{int(ratio[0])}x{int(ratio[1])}"


# ----------------------------------------------------------------------------------------------
# Configuration and results
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CropConfig:
    """Every tunable of the crop search, with its default and what it does.

    The defaults are what ``python -m gazecrop.tools.cropeval`` found best on MIT1003's val split (the issue
    note lists each option's measured effect).
    """

    # Target aspect ratios, (width, height) pairs; one crop (per rank) for each.
    aspect_ratios: tuple[Ratio, ...] = DEFAULT_ASPECT_RATIOS

    # Smallest window tried, as a share of the largest window of the ratio (linear size).
    # 1.0 = only the largest window (the default: keeps the most of the picture and of what people
    # look at). Below 1.0 windows of scales 1.0, 1.0 - scale_step, ... >= min_scale compete, with
    # ``area_weight`` favouring the smaller ones; the crop is never upscaled either way.
    min_scale: float = 1.0

    # Step between the scales tried when ``min_scale < 1``.
    scale_step: float = 0.1

    # Reward for a smaller window when ``min_scale < 1``: the score loses
    # ``area_weight * area / largest_area``, so a window of half the area wins when it keeps less
    # than ``area_weight / 2`` less mass than the largest one. No effect at a single scale.
    area_weight: float = 0.1

    # Ranked candidates per ratio (rank 0 = best). Later ranks are the best windows that overlap
    # (intersection over union) at most ``candidate_overlap`` with every better one; fewer come
    # back when the source leaves no such room (e.g. a square source and a 1:1 crop).
    candidates: int = 1

    # Most intersection-over-union a lower-ranked candidate may have with a better one.
    candidate_overlap: float = 0.5

    # Penalty for cutting through a dense region at the crop's border: the score loses
    # ``border_weight`` times the mass of a band straddling every crop edge that lies inside the
    # image (edges on the image border cut nothing). 0 = off.
    border_weight: float = 0.0

    # Half-width of that band, as a share of the source's side across the edge.
    border_band: float = 0.03

    # Composition prior: the score loses ``composition_weight`` times the squared distance between
    # the crop's centre and the centre of the saliency mass inside it (in crop widths/heights),
    # so the subject sits near the middle of the crop. 0 = off.
    composition_weight: float = 0.0

    # Head room: the score loses ``headroom_weight`` times the salient mass (the predicted density above
    # ``headroom_level`` times the map's peak and above the mean density, so that the smooth background every
    # map has does not count, and a flat map has none) in a band across the crop's top edge, ``headroom`` of
    # the crop's height above it and as much below it, when that edge lies inside the picture. The top edge
    # then runs clear of a head or a face: above it with room to spare rather than through it or flush
    # against it (mass cut off just above the edge counts as much as mass just below, so leaving the face
    # out does not pay). A crop whose top is the picture's own top pays nothing: the picture has no more
    # room to give. 0 = off (the plain best window). The default costs no gain, within noise, on MIT1003 and
    # NUS Scene val through the pipeline (model card, "Composition: head room").
    headroom_weight: float = 0.4

    # Half-height of that band, as a share of the crop's height.
    headroom: float = 0.12

    # The share of the map's peak density above which saliency counts as a subject for the head room.
    headroom_level: float = 0.1

    # Face boxes: with the faces a model's face prior found (``choose_crops``'s ``faces``; the default model has
    # a prior, the fast model none), the score loses ``face_weight`` times how much the crop cuts through them,
    # at most ``face_limit``. Each face stands for nested boxes: the face, its head (the face box extended
    # upward by ``face_head`` of its height for forehead and hair, and by ``_HEAD_SIDE`` of its width on each
    # side) and, with ``face_room``, the head with room above it; a box is cut by the smaller of the shares of
    # it the crop keeps and leaves out, so a crop keeps a head whole rather than slice it. A box longer than
    # the crop on an axis (a portrait's face in a 16:9 crop) counts only the part of it a crop can hold: its
    # bottom on the vertical axis, so the crop keeps the face down to the chin and cuts above it. Faces weigh
    # by their detection score over the total (a crowd costs no more than one face); boxes are clipped to the
    # picture. The limit makes it a constraint with a tolerance: the crop keeps a head whole when that costs
    # at most ``face_limit`` of the score (predicted mass), else the map decides. 0 = off (the faces change
    # nothing). Model card, "Composition: face boxes".
    face_weight: float = 1.0

    # Most score a crop gives up to keep the faces' heads whole.
    face_limit: float = 0.04

    # Height of the hair and forehead above a face box, as a share of the face box's height.
    face_head: float = 0.6

    # Room above the head, as a share of the face box's height (0: no room box; the head room term still
    # keeps the crop's top edge clear of the predicted face).
    face_room: float = 0.0

    # Scores within this of the best are a tie, and the tie goes to the window nearest the centre
    # of the source. Mass is a share in [0, 1], so 1e-6 only settles numerical ties; larger values
    # act as a centre prior (keep the centre unless the model is surer than this).
    tie_tolerance: float = 1e-6

    # Prefer the exact ratio (width:height = a multiple of the reduced ratio) when it costs at most
    # this share of the area of the largest window rounded to the nearest whole pixel; otherwise
    # (tiny sources, ratios such as 191:100) the rounded window is used.
    exact_ratio_slack: float = 0.05

    # Candidate offsets per axis and window in the coarse search (evenly spaced from end to end,
    # plus the centred offset; a focus narrows the range); the winner is then refined on finer
    # grids of the same count down to the pixel. Only used with ``min_scale < 1`` (and for sources whose
    # largest windows have more than ``_EXACT_MAX_OFFSETS`` offsets): the largest windows are searched
    # over every offset.
    positions: int = 33

    def __post_init__(self):
        ratios = self.aspect_ratios
        if isinstance(ratios, str):
            ratios = parse_aspect_ratios(ratios)
        ratios = tuple((int(a), int(b)) for a, b in ratios)
        problems = [ratio_problem(a, b) for a, b in ratios]
        if not ratios or any(problems):
            raise ValueError(f"aspect_ratios must be (w, h) pairs: {next(filter(None, problems), 'none given')}. "
                             f"Received: aspect_ratios={self.aspect_ratios!r}")
        object.__setattr__(self, "aspect_ratios", ratios)
        if not 0.0 < self.min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1]. Received: min_scale={self.min_scale!r}")
        if not 0.0 < self.scale_step <= 1.0:
            raise ValueError(f"scale_step must be in (0, 1]. Received: scale_step={self.scale_step!r}")
        if int(self.candidates) < 1:
            raise ValueError(f"candidates must be >= 1. Received: candidates={self.candidates!r}")
        if not 0.0 <= self.candidate_overlap < 1.0:
            raise ValueError(f"candidate_overlap must be in [0, 1). "
                             f"Received: candidate_overlap={self.candidate_overlap!r}")
        if int(self.positions) < 3:
            raise ValueError(f"positions must be >= 3. Received: positions={self.positions!r}")
        if not 0.0 <= self.headroom_level < 1.0:
            raise ValueError(f"headroom_level must be in [0, 1). Received: headroom_level={self.headroom_level!r}")
        if not 0.0 <= self.headroom <= 1.0:
            raise ValueError(f"headroom must be in [0, 1]. Received: headroom={self.headroom!r}")
        for name in ("area_weight", "border_weight", "border_band", "composition_weight", "headroom_weight",
                     "face_weight", "face_limit", "face_head", "face_room", "tie_tolerance", "exact_ratio_slack"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0. Received: {name}={getattr(self, name)!r}")

    @property
    def scales(self) -> np.ndarray:
        """The window scales tried, largest first: 1.0, 1.0 - scale_step, ... >= min_scale."""
        n = int(math.floor((1.0 - self.min_scale) / self.scale_step + 1e-9)) + 1
        return 1.0 - self.scale_step * np.arange(n, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Crop:
    """One crop of one source image, in source pixels (after EXIF orientation)."""

    aspect_ratio: str      # "16:9"
    x: int
    y: int
    width: int
    height: int
    saliency_kept: float   # share of the predicted density inside the crop (expected share of fixations)
    rank: int = 0          # 0 = best candidate of its ratio
    score: float = 0.0     # what the search maximised (saliency_kept minus the enabled penalties)


@dataclasses.dataclass(frozen=True)
class Focus:
    """A region the crop must contain, in source pixels: a point (width = height = 0) or a box.

    When the box is larger than the window on an axis, the window stays inside the box on that axis.
    """

    x: float
    y: float
    width: float = 0.0
    height: float = 0.0

    @classmethod
    def coerce(cls, value) -> Optional["Focus"]:
        """``None``, a ``Focus``, ``(x, y)`` or ``(x, y, width, height)`` -> ``Focus`` or ``None``."""
        if value is None or isinstance(value, Focus):
            return value
        values = [float(v) for v in value]
        if len(values) not in (2, 4) or not all(math.isfinite(v) for v in values):
            raise ValueError(f"focus must be (x, y) or (x, y, width, height). Received: focus={value!r}")
        if len(values) == 4 and (values[2] < 0 or values[3] < 0):
            raise ValueError(f"focus width and height must be >= 0. Received: focus={value!r}")
        return cls(*values)


FocusLike = Union[None, Focus, Sequence[float]]


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------

def window_sizes(source_sizes, ratios, scales=(1.0,), exact_ratio_slack: float = 0.05) -> np.ndarray:
    """Largest window of each ratio at each scale: int64 array (N, R, S, 2) of (width, height).

    ``source_sizes`` (N, 2) of (W, H). At scale ``s`` the window is the largest of the ratio inside
    ``floor(s*W) x floor(s*H)``: the exact ratio (a multiple of the reduced ratio) unless that loses
    more than ``exact_ratio_slack`` of the area against the nearest-integer window that spans the
    limiting side; always 1 <= width <= W and 1 <= height <= H.
    """
    sizes = np.asarray(source_sizes, dtype=np.int64).reshape(-1, 1, 1, 2)
    r = np.asarray(ratios, dtype=np.int64).reshape(1, -1, 1, 2)
    g = np.gcd(r[..., 0], r[..., 1])
    a, b = r[..., 0] // g, r[..., 1] // g                                  # (1, R, 1)
    s = np.asarray(scales, dtype=np.float64).reshape(1, 1, -1)
    bw = np.maximum(1, np.floor(sizes[..., 0] * s + 1e-9).astype(np.int64))  # (N, 1, S)
    bh = np.maximum(1, np.floor(sizes[..., 1] * s + 1e-9).astype(np.int64))
    # Exact: k * (a, b) with the largest k that fits.
    k = np.minimum(bw // a, bh // b)
    ew, eh = k * a, k * b
    # Rounded: the limiting side in full, the other side to the nearest pixel.
    width_limited = bw * b <= bh * a
    rw = np.where(width_limited, bw, np.clip((2 * bh * a + b) // (2 * b), 1, bw))
    rh = np.where(width_limited, np.clip((2 * bw * b + a) // (2 * a), 1, bh), bh)
    use_exact = (k >= 1) & (ew * eh >= (1.0 - exact_ratio_slack) * rw * rh)
    return np.stack([np.where(use_exact, ew, rw), np.where(use_exact, eh, rh)], axis=-1)


def _densities(log_density: np.ndarray) -> np.ndarray:
    """(B, h, w) log-density -> (B, h, w) float64 density summing to 1 (uniform when unusable).

    NaN counts as zero density; a map with no finite value or no mass becomes uniform.
    """
    p = np.array(log_density, dtype=np.float64)          # a copy, worked on in place
    nan = np.isnan(p)
    if nan.any():
        p[nan] = -np.inf
    peak = p.max(axis=(1, 2), keepdims=True)
    usable = np.isfinite(peak)
    p -= np.where(usable, peak, 0.0)
    np.exp(p, out=p)
    total = p.sum(axis=(1, 2), keepdims=True)
    usable &= np.isfinite(total) & (total > 0)
    p /= np.where(usable, total, 1.0)
    if not usable.all():
        p[~usable[:, 0, 0]] = 1.0 / (p.shape[1] * p.shape[2])
    return p


def _sat(values: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column: (B, h, w) -> (B, h + 1, w + 1)."""
    out = np.zeros((values.shape[0], values.shape[1] + 1, values.shape[2] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(values, axis=1), axis=2, out=out[:, 1:, 1:])
    return out


class _Tables:
    """The SATs of one batch and the source sizes, for reading box sums in source pixels.

    The density is constant inside each map cell, so the SAT between grid points is exactly the
    bilinear interpolation of its values at the grid points: that is how a box in source pixels is
    read from a map-resolution table.
    """

    def __init__(self, density: np.ndarray, source_sizes: np.ndarray, moments: bool, salient_level: float,
                 faces=None):
        self.b, self.h, self.w = density.shape
        # The face boxes (B, K, N, 4) and their weights (B, K) (``_face_boxes``), or None.
        self.face_boxes, self.face_weights = (None, None) if faces is None else faces
        self.width = source_sizes[:, 0].astype(np.float64)    # (B,)
        self.height = source_sizes[:, 1].astype(np.float64)
        self.mass = _sat(density).reshape(self.b, -1)
        # The salient mass (head room), computed on first use: most crops have no room to move up or down.
        self._density, self._salient_level, self._salient = density, salient_level, None
        if moments:  # first moments, in map cells, for the centre of mass (composition prior)
            cx = np.arange(self.w, dtype=np.float64) + 0.5
            cy = np.arange(self.h, dtype=np.float64) + 0.5
            self.mx = _sat(density * cx[None, None, :]).reshape(self.b, -1)
            self.my = _sat(density * cy[None, :, None]).reshape(self.b, -1)

    @property
    def salient(self) -> np.ndarray:
        """SAT of the density above ``salient_level`` times each map's peak (and above its mean), (B, T): what
        the head room counts."""
        if self._salient is None:
            # The floor: the level's share of the peak, and at least the mean density (1 / cells), so that a
            # flat map (no subject) has no salient mass.
            floor = np.maximum(self._salient_level * self._density.max(axis=(1, 2), keepdims=True),
                               1.0 / (self.h * self.w))
            self._salient = _sat(np.maximum(self._density - floor, 0.0)).reshape(self.b, -1)
        return self._salient

    def _corner(self, table, x, y):
        """SAT value at source point(s) (x, y): arrays shaped (B, ...)."""
        shape = x.shape
        u = (x.reshape(self.b, -1) * (self.w / self.width[:, None])).clip(0, self.w)
        v = (y.reshape(self.b, -1) * (self.h / self.height[:, None])).clip(0, self.h)
        j0 = np.minimum(np.floor(u).astype(np.int64), self.w - 1)
        i0 = np.minimum(np.floor(v).astype(np.int64), self.h - 1)
        fu, fv = u - j0, v - i0
        stride = self.w + 1
        base = i0 * stride + j0

        def at(offset):
            return np.take_along_axis(table, base + offset, axis=1)

        top = at(0) * (1 - fu) + at(1) * fu
        bottom = at(stride) * (1 - fu) + at(stride + 1) * fu
        return (top * (1 - fv) + bottom * fv).reshape(shape)

    def image(self, i: int) -> "_Tables":
        """The tables of image ``i`` alone (a batch of one; views, no copies)."""
        one = object.__new__(_Tables)
        one.__dict__.update({k: (v[i:i + 1] if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()})
        one.b = 1
        return one

    def box(self, x0, y0, x1, y1, table=None):
        """Sum over the source box [x0, x1) x [y0, y1) (float arrays shaped (B, ...))."""
        t = self.mass if table is None else table
        return (self._corner(t, x1, y1) - self._corner(t, x0, y1)
                - self._corner(t, x1, y0) + self._corner(t, x0, y0))


# Face boxes: the head box is the face box widened by this share of its width on each side (ears, hair).
_HEAD_SIDE = 0.15
# Most faces per image the search keeps whole (the best detections; a crowd's crop cuts someone anyway).
_MAX_FACES = 16


def _face_boxes(faces: Sequence, sizes: np.ndarray, config: CropConfig):
    """Per image the boxes ``_face_cut`` keeps whole, in source pixels: (B, K, N, 4) float64 (x0, y0, x1, y1) of
    each face, its head and (N = 3, with ``face_room``) its head with room above (``CropConfig.face_head``,
    ``face_room``), clipped to the picture; and (B, K) weights (detection scores over their sum; 0 pads images
    with fewer faces). None when no image has a face."""
    found = [np.zeros((0, 5)) if f is None else np.asarray(f, np.float64).reshape(-1, 5)[:_MAX_FACES]
             for f in faces]
    found = [f[np.isfinite(f).all(axis=1) & (f[:, 2] > f[:, 0]) & (f[:, 3] > f[:, 1]) & (f[:, 4] > 0)]
             for f in found]
    k = max((len(f) for f in found), default=0)
    if k == 0:
        return None
    boxes = np.zeros((len(found), k, 3 if config.face_room > 0 else 2, 4))
    weights = np.zeros((len(found), k))
    for i, f in enumerate(found):
        if not len(f):
            continue
        width, height = (float(v) for v in sizes[i])
        x0, y0, x1, y1 = f[:, 0] * width, f[:, 1] * height, f[:, 2] * width, f[:, 3] * height
        side, up = _HEAD_SIDE * (x1 - x0), config.face_head * (y1 - y0)
        room = (config.face_head + config.face_room) * (y1 - y0)
        nested = [np.stack([x0, y0, x1, y1], -1), np.stack([x0 - side, y0 - up, x1 + side, y1], -1)]
        if config.face_room > 0:
            nested.append(np.stack([x0 - side, y0 - room, x1 + side, y1], -1))
        nested = np.stack(nested, axis=1)                                                    # (K_i, N, 4)
        boxes[i, :len(f)] = np.clip(nested, 0.0, [width, height, width, height])
        weights[i, :len(f)] = f[:, 4] / f[:, 4].sum()
    return boxes, weights


def _face_cut(tables: _Tables, x, y, x1, y1) -> np.ndarray:
    """How much windows [x, x1) x [y, y1) cut through the faces (arrays shaped (B, ...)): per face and box
    (``_face_boxes``) the smaller of the shares of the box inside and outside the window (on an axis where the
    box is longer than the window, of its part the window can hold), summed over a face's boxes and weighted
    over the faces. Direct box arithmetic: a handful of boxes per image."""
    shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(x1), np.shape(y1))
    b = shape[0]
    x, y, x1, y1 = (np.broadcast_to(np.asarray(a, np.float64), shape).reshape(b, -1, 1, 1) for a in (x, y, x1, y1))
    boxes = tables.face_boxes[:, None]                            # (B, 1, K, N, 4)
    bx0, by0, bx1, by1 = (boxes[..., j] for j in range(4))        # (B, 1, K, N)
    bw, bh = bx1 - bx0, by1 - by0

    def share(lo, hi, b0, b1, keep):
        """(share of the box inside the window on one axis, whether the box fits, whether they overlap). A box
        longer than the window is first cut down to the window's length, keeping the part ``keep`` says (0: its
        middle; 1: its bottom: the chin of a face taller than the crop, whose top is then cut)."""
        overlaps = np.minimum(hi, b1) > np.maximum(lo, b0)
        excess = np.maximum((b1 - b0) - (hi - lo), 0.0)
        b0, b1 = b0 + excess * (0.5 + 0.5 * keep), b1 - excess * (0.5 - 0.5 * keep)
        overlap = np.clip(np.minimum(hi, b1) - np.maximum(lo, b0), 0.0, None)
        return overlap / np.maximum(b1 - b0, 1e-9), excess == 0, overlaps

    in_x, fits_x, on_x = share(x, x1, bx0, bx1, 0.0)
    in_y, fits_y, on_y = share(y, y1, by0, by1, 1.0)
    inside = in_x * in_y
    # A box that fits: the smaller share, kept or left out. One that does not: what the crop leaves out of the part
    # it can hold, once the crop touches the box (leaving that part out to cut the rest is no way out).
    cut = np.where(fits_x & fits_y, np.minimum(inside, 1.0 - inside), np.where(on_x & on_y, 1.0 - inside, 0.0))
    cut = np.where((bw > 0) & (bh > 0), cut, 0.0).sum(axis=-1)                                      # (B, M, K)
    return (cut * tables.face_weights[:, None]).sum(axis=-1).reshape(shape)


def _face_penalty(tables: _Tables, config: CropConfig, x, y, x1, y1) -> np.ndarray:
    """What the score loses for cutting faces: ``face_weight`` times ``_face_cut``, at most ``face_limit``."""
    return np.minimum(config.face_weight * _face_cut(tables, x, y, x1, y1), config.face_limit)


def _score(tables: _Tables, config: CropConfig, x, y, cw, ch, largest_area):
    """(score, kept) of windows [x, x+cw) x [y, y+ch); arrays broadcastable to (B, ...)."""
    x, y, cw, ch = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, y, cw, ch)))
    x1, y1 = x + cw, y + ch
    kept = tables.box(x, y, x1, y1)
    score = kept.copy()
    if config.area_weight > 0 and config.min_scale < 1.0:
        score -= config.area_weight * (cw * ch) / largest_area
    if config.border_weight > 0:
        extra = (slice(None),) + (None,) * (x.ndim - 1)
        bx = (config.border_band * tables.width)[extra]
        by = (config.border_band * tables.height)[extra]
        width, height = tables.width[extra], tables.height[extra]
        cut = (np.where(x > 0, tables.box(x - bx, y, x + bx, y1), 0.0)
               + np.where(x1 < width, tables.box(x1 - bx, y, x1 + bx, y1), 0.0)
               + np.where(y > 0, tables.box(x, y - by, x1, y + by), 0.0)
               + np.where(y1 < height, tables.box(x, y1 - by, x1, y1 + by), 0.0))
        score -= config.border_weight * cut
    if config.headroom_weight > 0 and (y > 0).any():
        room = tables.box(x, y - config.headroom * ch, x1, y + config.headroom * ch, tables.salient)
        score -= config.headroom_weight * np.where(y > 0, room, 0.0)
    if config.face_weight > 0 and tables.face_boxes is not None:
        score -= _face_penalty(tables, config, x, y, x1, y1)
    if config.composition_weight > 0:
        extra = (slice(None),) + (None,) * (x.ndim - 1)
        sx = (tables.w / tables.width)[extra]
        sy = (tables.h / tables.height)[extra]
        safe = np.maximum(kept, 1e-12)
        mx = tables.box(x, y, x1, y1, tables.mx) / safe / sx    # centre of mass, source pixels
        my = tables.box(x, y, x1, y1, tables.my) / safe / sy
        off = ((mx - (x + x1) / 2) / cw) ** 2 + ((my - (y + y1) / 2) / ch) ** 2
        score -= config.composition_weight * off
    return score, kept


def _axis_positions(lo, hi, centre, count):
    """Candidate offsets on one axis: ``count`` evenly spaced in [lo, hi], plus the centred one.

    All arguments are int arrays of the same shape; returns (..., count + 1) int64.
    """
    t = np.linspace(0.0, 1.0, count)
    grid = np.rint(lo[..., None] + t * (hi - lo)[..., None]).astype(np.int64)
    return np.concatenate([grid, np.clip(centre, lo, hi)[..., None]], axis=-1)


def _focus_bounds(focus: Sequence[Optional[Focus]], size, window):
    """Allowed offset range [lo, hi] on one axis for each image's window (int64, shape of window).

    ``size`` (B,) is the source side, ``window`` (B, R, S) the window side; ``focus`` gives per
    image (start, length) on that axis or None.
    """
    size = size.reshape(-1, 1, 1)
    lo = np.zeros_like(window)
    hi = size - window
    for i, f in enumerate(focus):     # per image, not per pixel or candidate
        if f is None:
            continue
        start, length = f
        side = int(size[i, 0, 0])
        # Clamped to the picture as floats first: a huge start or length (1e308) must not reach int()
        # as inf (start + length can overflow).
        first = int(math.floor(min(max(start, 0.0), side - 1)))                # first pixel to keep
        last = min(max(int(math.ceil(min(start + length, side))), first + 1), side)  # one past the last
        fits = window[i] >= last - first
        lo_i = np.where(fits, last - window[i], first)
        hi_i = np.where(fits, first, last - window[i])
        lo[i] = np.clip(lo_i, 0, hi[i])
        hi[i] = np.clip(hi_i, lo[i], hi[i])
    return lo, hi


def _pick(score, x, y, cw, ch, width, height, tolerance):
    """Index of the best candidate along the last axis; ties (within tolerance) go to the centre.

    Returns (index, valid) where valid is False where every score is -inf.
    """
    best = score.max(axis=-1, keepdims=True)
    valid = np.isfinite(best[..., 0])
    eligible = score >= best - tolerance
    dx = x + cw / 2.0 - width / 2.0
    dy = y + ch / 2.0 - height / 2.0
    distance = np.where(eligible, dx * dx + dy * dy, np.inf)
    return np.argmin(distance, axis=-1), valid


def window_iou(ax, ay, aw, ah, bx, by, bw, bh):
    """Intersection over union of windows (x, y, width, height), broadcasting; 0 where the union is empty. The
    crop search's candidate suppression and the face detector's box merging (``gazecrop.model.faces``) use it."""
    ix = np.clip(np.minimum(ax + aw, bx + bw) - np.maximum(ax, bx), 0, None)
    iy = np.clip(np.minimum(ay + ah, by + bh) - np.maximum(ay, by), 0, None)
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


# ----------------------------------------------------------------------------------------------
# The search, step by step
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Grid:
    """The coarse candidates of a batch (steps 2 and 3): every scale's windows at every offset pair,
    flattened per image and ratio to (B, R, N) with N = scales x (P + 1)^2."""

    x: np.ndarray               # (B, R, N) candidate windows [x, x + width) x [y, y + height)
    y: np.ndarray
    width: np.ndarray
    height: np.ndarray
    scale_index: np.ndarray     # (N,) the scale of each candidate
    lo_x: np.ndarray            # (B, R, S) allowed offsets of each scale's window (focus bounds)
    hi_x: np.ndarray
    lo_y: np.ndarray
    hi_y: np.ndarray
    step_x: np.ndarray          # (B, R, S) coarse grid spacing: the first refinement's half-range
    step_y: np.ndarray
    source_width: np.ndarray    # (B, 1, 1)
    source_height: np.ndarray
    largest_area: np.ndarray    # (B, R, 1) float: the scale-1 window's area (area_weight's unit)


class _Window(NamedTuple):
    """One rank's chosen window per image and ratio, (B, R) arrays; ``valid`` False where none is left."""

    x: np.ndarray
    y: np.ndarray
    width: np.ndarray
    height: np.ndarray
    valid: np.ndarray
    kept: np.ndarray
    score: np.ndarray


def _check_inputs(log_density, source_sizes, focus):
    """The arguments of ``choose_crops`` as (log_density (B, h, w), sizes (B, 2) int64, B foci or None)."""
    log_density = np.asarray(log_density)
    if log_density.ndim == 2:
        log_density = log_density[None]
    if log_density.ndim != 3 or log_density.shape[1] < 1 or log_density.shape[2] < 1:
        raise ValueError(f"log_density must be (B, h, w). Received shape {log_density.shape}")
    b = log_density.shape[0]
    sizes = np.asarray(source_sizes, dtype=np.int64).reshape(-1, 2)
    if sizes.shape[0] != b:
        raise ValueError(f"{b} maps but {sizes.shape[0]} source sizes")
    if (sizes < 1).any():
        raise ValueError(f"source sizes must be positive. Received: {sizes.tolist()}")
    focus = [None] * b if focus is None else [Focus.coerce(f) for f in focus]
    if len(focus) != b:
        raise ValueError(f"{b} maps but {len(focus)} focus entries")
    return log_density, sizes, focus


def _offset_pairs(px, py):
    """Every pair of an x offset and a y offset: (B, R, ..., P) each -> (B, R, everything else) each."""
    n = px.shape[-1]
    b, r = px.shape[:2]
    x = np.broadcast_to(px[..., :, None], px.shape + (n,)).reshape(b, r, -1)
    y = np.broadcast_to(py[..., None, :], py.shape[:-1] + (n, n)).reshape(b, r, -1)
    return x, y


def _candidate_grid(sizes, config: CropConfig, focus: Sequence[Optional[Focus]]) -> _Grid:
    """Steps 2 and 3: each ratio's windows (``window_sizes``), and the coarse grid of their offsets
    (``_axis_positions`` within the ``_focus_bounds``)."""
    windows = window_sizes(sizes, config.aspect_ratios, config.scales, config.exact_ratio_slack)  # (B, R, S, 2)
    cw, ch = windows[..., 0], windows[..., 1]
    b, n_ratio, n_scale = cw.shape
    width = sizes[:, 0].reshape(-1, 1, 1)
    height = sizes[:, 1].reshape(-1, 1, 1)
    lo_x, hi_x = _focus_bounds([None if f is None else (f.x, f.width) for f in focus], sizes[:, 0], cw)
    lo_y, hi_y = _focus_bounds([None if f is None else (f.y, f.height) for f in focus], sizes[:, 1], ch)
    px = _axis_positions(lo_x, hi_x, (width - cw) // 2, config.positions)    # (B, R, S, P)
    py = _axis_positions(lo_y, hi_y, (height - ch) // 2, config.positions)
    gx, gy = _offset_pairs(px, py)
    n = px.shape[-1]
    gw = np.broadcast_to(cw[..., None, None], cw.shape + (n, n)).reshape(b, n_ratio, -1)
    gh = np.broadcast_to(ch[..., None, None], ch.shape + (n, n)).reshape(b, n_ratio, -1)
    return _Grid(
        x=gx, y=gy, width=gw, height=gh,
        scale_index=np.broadcast_to(np.arange(n_scale)[:, None, None], (n_scale, n, n)).reshape(-1),
        lo_x=lo_x, hi_x=hi_x, lo_y=lo_y, hi_y=hi_y,
        step_x=np.ceil((hi_x - lo_x) / (config.positions - 1)).astype(np.int64),
        step_y=np.ceil((hi_y - lo_y) / (config.positions - 1)).astype(np.int64),
        source_width=width, source_height=height,
        largest_area=(cw[..., :1] * ch[..., :1]).astype(np.float64))


def _suppress(score, x, y, width, height, taken: Sequence[_Window], max_overlap: float):
    """``score`` with -inf for every candidate overlapping (IoU > ``max_overlap``) a better rank's window."""
    for t in taken:
        overlap = window_iou(x, y, width, height,
                             t.x[..., None], t.y[..., None], t.width[..., None], t.height[..., None])
        score = np.where(t.valid[..., None] & (overlap > max_overlap), -np.inf, score)
    return score


def _next_rank(tables: _Tables, config: CropConfig, grid: _Grid, score, taken: Sequence[_Window]) -> _Window:
    """Step 5 for one rank: the best coarse candidate left (``_pick`` over the ``score`` of the grid,
    better ranks' windows suppressed), then ``_refine``d, then ``_exact_largest``. With ``score`` None
    (one scale, and ``_exact_covers`` the grid) only ``_exact_largest``: it scores every offset the grid
    and refinement could reach."""
    if score is None:
        none = np.zeros(grid.x.shape[:2], np.int64)
        nothing = _Window(x=none, y=none, width=grid.width[..., 0], height=grid.height[..., 0],
                          valid=np.zeros(none.shape, bool), kept=np.zeros(none.shape),
                          score=np.full(none.shape, -np.inf))
        return _exact_largest(tables, config, grid, nothing, taken)
    live = _suppress(score, grid.x, grid.y, grid.width, grid.height, taken, config.candidate_overlap)
    index, valid = _pick(live, grid.x, grid.y, grid.width, grid.height, grid.source_width,
                         grid.source_height, config.tie_tolerance)
    rows, cols = np.arange(index.shape[0])[:, None], np.arange(index.shape[1])[None, :]
    sel = (rows, cols, index)
    at_scale = (rows, cols, grid.scale_index[index])                          # (B, R) of the winner's scale
    start = _Window(x=grid.x[sel], y=grid.y[sel], width=grid.width[sel], height=grid.height[sel],
                    valid=valid, kept=None, score=None)
    bounds = (grid.lo_x[at_scale], grid.hi_x[at_scale], grid.lo_y[at_scale], grid.hi_y[at_scale])
    refined = _refine(tables, config, grid, start, bounds, (grid.step_x[at_scale], grid.step_y[at_scale]),
                      taken)
    return _exact_largest(tables, config, grid, refined, taken)


# Most offsets ``_exact_largest`` scores for one image and ratio (a largest window with play on both axes,
# e.g. a 10000 px source and an awkward ratio); beyond it the grid-and-refine window stands. With a border
# or composition term the scores go through ``_score`` in chunks of ``_EXACT_CHUNK`` offsets.
_EXACT_MAX_OFFSETS = 1 << 18
_EXACT_CHUNK = 1 << 15


def _slide_mass(tables: _Tables, i: int, xs, ys, width, height, table: Optional[np.ndarray] = None) -> np.ndarray:
    """Mass of the (width, height) window of image ``i`` at every offset ``xs`` x ``ys``: (len(ys), len(xs)).

    ``_Tables.box`` separated by axis: the table interpolated at the window's two edges on the axis with
    fewer offsets first (a few rows or columns), then each of those at every edge on the other axis; the
    same bilinear reading in O(offsets) work. ``table``: another of ``tables``' SATs than the mass
    (``salient``), (B, T).
    """
    table = (tables.mass if table is None else table)[i].reshape(tables.h + 1, tables.w + 1)
    # (offsets, edge length, map cells, source side) per axis; the first has the fewer offsets.
    axes = [(ys, height, tables.h, tables.height[i]), (xs, width, tables.w, tables.width[i])]
    if ys.size > xs.size:
        table, axes = table.T, axes[::-1]

    def weights(edges, cells, side):
        t = (np.asarray(edges, np.float64) * (cells / side)).clip(0, cells)
        first = np.minimum(np.floor(t).astype(np.int64), cells - 1)
        return first, t - first

    def lines_at(edges):                      # table rows (first axis) at the given edges
        first, frac = weights(edges, *axes[0][2:])
        return table[first] * (1 - frac)[:, None] + table[first + 1] * frac[:, None]

    def at(lines, edges):                     # each line at the given edges (second axis)
        first, frac = weights(edges, *axes[1][2:])
        return lines[:, first] * (1 - frac) + lines[:, first + 1] * frac

    (a, a_len), (b, b_len) = axes[0][:2], axes[1][:2]
    near, far = lines_at(a), lines_at(a + a_len)
    mass = at(far, b + b_len) - at(near, b + b_len) - at(far, b) + at(near, b)
    return mass if ys.size <= xs.size else mass.T


def _exact_covers(grid: _Grid) -> bool:
    """Whether ``_exact_largest`` scores every offset of every image's and ratio's largest window."""
    count = (grid.hi_x[..., 0] - grid.lo_x[..., 0] + 1) * (grid.hi_y[..., 0] - grid.lo_y[..., 0] + 1)
    return bool((count <= _EXACT_MAX_OFFSETS).all())


def _exact_largest(tables: _Tables, config: CropConfig, grid: _Grid, window: _Window,
                   taken: Sequence[_Window]) -> _Window:
    """``window`` (the refined grid winner, any scale), or the best largest (scale-1) window over every
    integer offset within the focus bounds where that scores more (``_pick``'s rule: within
    ``tie_tolerance`` the one nearer the centre wins), better ranks suppressed as in the grid.

    Per image and ratio (their numbers of offsets differ). Without border and composition terms the mass (and
    head room) of every offset comes from ``_slide_mass``; with them, from ``_score``. A ratio with more than
    ``_EXACT_MAX_OFFSETS`` offsets keeps ``window``. A window that changes is scored again by ``_score``, so
    that its ``kept`` and ``score`` are read as every other window's.
    """
    out = {k: getattr(window, k).copy() for k in _Window._fields}
    plain = config.border_weight == 0 and config.composition_weight == 0
    for i, r in np.ndindex(*window.x.shape):
        lo_x, hi_x, lo_y, hi_y = (int(a[i, r, 0]) for a in (grid.lo_x, grid.hi_x, grid.lo_y, grid.hi_y))
        if (hi_x - lo_x + 1) * (hi_y - lo_y + 1) > _EXACT_MAX_OFFSETS:
            continue
        w, h = int(grid.width[i, r, 0]), int(grid.height[i, r, 0])
        xs, ys = np.arange(lo_x, hi_x + 1), np.arange(lo_y, hi_y + 1)
        fx, fy = np.broadcast_to(xs[None, :], (ys.size, xs.size)), np.broadcast_to(ys[:, None], (ys.size, xs.size))
        fx, fy = fx.reshape(1, -1), fy.reshape(1, -1)
        largest = grid.largest_area[i:i + 1, r]
        if plain:
            score = _slide_mass(tables, i, xs, ys, w, h)
            if config.headroom_weight > 0 and hi_y > 0:   # _score's head room, its band slid as a window
                room = _slide_mass(tables, i, xs, ys - config.headroom * h, w, 2 * config.headroom * h, tables.salient)
                score = score - config.headroom_weight * np.where(ys[:, None] > 0, room, 0.0)
            score = score.reshape(1, -1)
            if config.face_weight > 0 and tables.face_boxes is not None:
                score = score - _face_penalty(tables.image(i), config, fx, fy, fx + w, fy + h)
            if config.area_weight > 0 and config.min_scale < 1.0:
                score = score - config.area_weight * (w * h) / largest
        else:
            score = np.concatenate([_score(tables.image(i), config, fx[:, k:k + _EXACT_CHUNK],
                                           fy[:, k:k + _EXACT_CHUNK], w, h, largest)[0]
                                    for k in range(0, fx.shape[1], _EXACT_CHUNK)], axis=1)
        better = [t._replace(**{f: getattr(t, f)[i:i + 1, r] for f in ("x", "y", "width", "height", "valid")})
                  for t in taken]
        score = _suppress(score, fx, fy, w, h, better, config.candidate_overlap)
        # The grid's winner competes as it stands (a smaller scale may beat every largest window).
        mine = window.valid[i, r]
        score = np.append(score, window.score[i, r] if mine else -np.inf)[None]
        fx, fy = np.append(fx, window.x[i, r])[None], np.append(fy, window.y[i, r])[None]
        fw = np.append(np.full(fx.shape[1] - 1, w), window.width[i, r])[None]
        fh = np.append(np.full(fx.shape[1] - 1, h), window.height[i, r])[None]
        index, valid = _pick(score, fx, fy, fw, fh, grid.source_width[i, 0], grid.source_height[i, 0],
                             config.tie_tolerance)
        j = int(index[0])
        if not valid[0] or (mine and (fx[0, j], fy[0, j], fw[0, j], fh[0, j])
                            == (window.x[i, r], window.y[i, r], window.width[i, r], window.height[i, r])):
            continue
        s, k = _score(tables.image(i), config, fx[:, j:j + 1], fy[:, j:j + 1], w, h, largest)
        s = _suppress(s, fx[:, j:j + 1], fy[:, j:j + 1], w, h, better, config.candidate_overlap)
        out["x"][i, r], out["y"][i, r], out["width"][i, r], out["height"][i, r] = fx[0, j], fy[0, j], w, h
        out["valid"][i, r], out["kept"][i, r], out["score"][i, r] = True, k[0, 0], s[0, 0]
    return _Window(**out)


def _refine(tables: _Tables, config: CropConfig, grid: _Grid, window: _Window, bounds, steps,
            taken: Sequence[_Window]) -> _Window:
    """The coarse winner moved on ever finer grids around it, same window size, until the step is
    one pixel (one pass for sources of up to ~1000 px of play; a few for panoramas).

    ``bounds`` (lo_x, hi_x, lo_y, hi_y) and ``steps`` (step_x, step_y) are (B, R) arrays for the
    winner's scale. The current winner is in each grid (its last entry), so refinement never loses score.
    """
    lo_x, hi_x, lo_y, hi_y = bounds
    sx, sy = steps
    w, h = window.width[..., None], window.height[..., None]
    rows, cols = np.arange(w.shape[0])[:, None], np.arange(w.shape[1])[None, :]
    while True:
        rx = _axis_positions(np.maximum(window.x - sx, lo_x), np.minimum(window.x + sx, hi_x), window.x,
                             config.positions)
        ry = _axis_positions(np.maximum(window.y - sy, lo_y), np.minimum(window.y + sy, hi_y), window.y,
                             config.positions)
        fx, fy = _offset_pairs(rx, ry)
        score, kept = _score(tables, config, fx, fy, w, h, grid.largest_area)
        score = _suppress(score, fx, fy, w, h, taken, config.candidate_overlap)
        index, _ = _pick(score, fx, fy, w, h, grid.source_width, grid.source_height, config.tie_tolerance)
        sel = (rows, cols, index)
        window = window._replace(x=fx[sel], y=fy[sel], kept=kept[sel], score=score[sel])
        sx = np.ceil(2 * sx / (config.positions - 1)).astype(np.int64)
        sy = np.ceil(2 * sy / (config.positions - 1)).astype(np.int64)
        if not ((sx > 1).any() or (sy > 1).any()):
            return window


def _crops_of(ranks: Sequence[_Window], labels: Sequence[str]) -> list[list[Crop]]:
    """Step 6: the chosen windows as ``Crop``s, per image by ratio then rank.

    Refinement can reorder the later ranks by a hair: they are sorted by score, keeping rank 0 the
    window that candidates=1 gives (asking for more candidates never changes the main crop).
    """
    b = ranks[0].valid.shape[0]
    out: list[list[list[Crop]]] = [[[] for _ in labels] for _ in range(b)]
    for rank, window in enumerate(ranks):
        for i in range(b):
            for r, label in enumerate(labels):
                if window.valid[i, r]:
                    out[i][r].append(Crop(
                        aspect_ratio=label, x=int(window.x[i, r]), y=int(window.y[i, r]),
                        width=int(window.width[i, r]), height=int(window.height[i, r]),
                        saliency_kept=float(np.clip(window.kept[i, r], 0.0, 1.0)), rank=rank,
                        score=float(window.score[i, r])))
    result = []
    for image in out:
        crops = []
        for per_ratio in image:
            later = sorted(per_ratio[1:], key=lambda c: -c.score)
            crops += per_ratio[:1] + [dataclasses.replace(c, rank=i + 1) for i, c in enumerate(later)]
        result.append(crops)
    return result


def choose_crops(log_density, source_sizes, config: CropConfig = CropConfig(), *,
                 focus: Optional[Sequence[FocusLike]] = None, faces: Optional[Sequence] = None) -> list[list[Crop]]:
    """Chooses the crops of a batch: per image, ``Crop``s for every ratio (ranks 0.. after each other).

    Args:
      log_density: float (B, h, w) log-density at model resolution (one shape for the batch).
      source_sizes: B pairs (width, height) of the sources after EXIF orientation.
      config: the search's tunables (``CropConfig``).
      focus: optional, per image None, ``(x, y)``, ``(x, y, width, height)`` or ``Focus`` in source
        pixels: a region the crop must contain (a person's hint beats the model).
      faces: optional, per image None or the faces its model's face prior found, (K, 5) rows (x0, y0, x1, y1,
        score) normalised to the source: the crop keeps their heads whole (``CropConfig.face_weight``).

    Returns:
      One list per image, in ``config.aspect_ratios`` order and by rank within a ratio; each ratio
      has rank 0, and up to ``config.candidates`` ranks.
    """
    log_density, sizes, focus = _check_inputs(log_density, source_sizes, focus)
    if len(sizes) == 0:
        return []
    if faces is not None and len(faces) != len(sizes):
        raise ValueError(f"{len(sizes)} maps but {len(faces)} face entries")
    faces = None if faces is None or config.face_weight == 0 else _face_boxes(faces, sizes, config)
    tables = _Tables(_densities(log_density), sizes, moments=config.composition_weight > 0,
                     salient_level=config.headroom_level, faces=faces)
    grid = _candidate_grid(sizes, config, focus)
    score = None
    if len(config.scales) > 1 or not _exact_covers(grid):
        score, _ = _score(tables, config, grid.x, grid.y, grid.width, grid.height, grid.largest_area)
    ranks: list[_Window] = []
    for _ in range(int(config.candidates)):
        ranks.append(_next_rank(tables, config, grid, score, ranks))
    return _crops_of(ranks, [ratio_label(r) for r in config.aspect_ratios])


class ImageCrops(NamedTuple):
    """One image's crops (every ratio, ranks 0.. within a ratio) and its focal point, in source pixels."""
    crops: tuple[Crop, ...]
    focal_x: int
    focal_y: int


def crop_images(log_densities: Sequence[np.ndarray], source_sizes, config: CropConfig = CropConfig(), *,
                focus: Optional[Sequence[FocusLike]] = None, faces: Optional[Sequence] = None) -> list[ImageCrops]:
    """The crops and focal point of each image, whatever the shapes of their maps: one ``choose_crops`` call
    per map shape, results in input order.

    What the crop stage (``gazecrop.transforms.select``) and ``gazecrop.crop`` both run, so the two give
    the same numbers for the same map.

    Args:
      log_densities: float (h, w) log-densities at model resolution, one per image (shapes may differ).
      source_sizes: one (width, height) per image, after EXIF orientation.
      config: the search's tunables (``CropConfig``).
      focus: optional, per image None or a region the crops must contain (see ``choose_crops``).
      faces: optional, per image None or the faces the model's face prior found (see ``choose_crops``).
    """
    maps = [np.asarray(ld) for ld in log_densities]
    sizes = [(int(w), int(h)) for w, h in source_sizes]
    focus = [None] * len(maps) if focus is None else list(focus)
    faces = [None] * len(maps) if faces is None else list(faces)
    if not len(maps) == len(sizes) == len(focus) == len(faces):
        raise ValueError(f"{len(maps)} maps, {len(sizes)} source sizes, {len(focus)} focus entries and "
                         f"{len(faces)} face entries: one of each per image")
    results: list[Optional[ImageCrops]] = [None] * len(maps)
    for indices in group_by_shape_of(maps).values():
        chosen = choose_crops(np.stack([maps[i] for i in indices]), [sizes[i] for i in indices], config,
                              focus=[focus[i] for i in indices], faces=[faces[i] for i in indices])
        for i, crops in zip(indices, chosen):
            focal_x, focal_y = focal_point(maps[i], sizes[i])
            results[i] = ImageCrops(crops=tuple(crops), focal_x=focal_x, focal_y=focal_y)
    return results


def focal_point(log_density, source_size) -> tuple[int, int]:
    """The saliency peak of one (h, w) log-density map, in source pixels ``(x, y)``.

    The centre of the peak's map cell, scaled to the source ``(width, height)``; ties go to the
    first cell in reading order.
    """
    ld = np.asarray(log_density, dtype=np.float64)
    if ld.ndim != 2:
        raise ValueError(f"log_density must be (h, w). Received shape {ld.shape}")
    width, height = int(source_size[0]), int(source_size[1])
    h, w = ld.shape
    ld = np.where(np.isnan(ld), -np.inf, ld)
    i, j = np.unravel_index(int(np.argmax(ld)), ld.shape)
    x = min(width - 1, int((j + 0.5) * width / w))
    y = min(height - 1, int((i + 0.5) * height / h))
    return x, y
