"""Crop quality against where people look: ``python -m gazecrop.tools.cropeval --dataset DIR``.

For every image of an eye-tracking dataset (MIT1003 layout, see ``gazecrop.tools.data``) and every aspect
ratio, each method chooses a crop and we count the share of the image's human fixations inside it.
All methods use the largest window of the ratio (``gazecrop.search.window_sizes``), so only the
placement differs (unless ``--min_scale`` lets gazecrop shrink its own window).

Methods:
  gazecrop           the model's log-density through ``gazecrop.search.choose_crops`` (the pipeline's code)
  centre             the centred window
  best               the window placed on the fixations themselves (an upper bound)
  smartcrop          smartcrop.py (PyPI ``smartcrop``), largest scale; needs the package
  vips-attention     libvips ``smartcrop(interesting="attention")``; needs PyPI ``pyvips`` + libvips
  vips-entropy       libvips ``smartcrop(interesting="entropy")``
  spectral-residual  spectral-residual saliency (Hou & Zhang 2007, as OpenCV's contrib module computes
                     it) + the window keeping the most of it (``choose_crops``)

With several ``--model`` (e.g. ``--model default --model fast``) each model's crops are a row
``gazecrop (<model>)``.

``--boxes TABLE`` scores the crops a ``gazecrop run`` wrote instead (its metadata table: a Parquet file
or the output root's ``metadata/`` folder), row ``table`` (``table (<label>)`` for ``--boxes LABEL=TABLE``;
repeatable), beside ``centre`` and ``best`` (and any ``--methods`` named), with the same shares and gains
as the model's rows: the pipeline's crops (its decode, model and search) measured as the model's are.
A row's ``source_uri`` is matched to the dataset's images by file name; rows of rank > 0 are ignored;
images of the list without a rank-0 row for every ratio are left out of every row and reported
(``missing``).

Printed: the mean share kept per ratio and overall, the gain ``(method - centre) / (best - centre)``
per ratio and pooled over images and ratios with its 95% bootstrap interval over images (``--bootstrap``),
and seconds per image. With two or more model or table rows, each pair's gain difference follows with its
paired bootstrap interval (the same resampled images for both rows): on ~100 images a difference
whose interval holds 0 is not evidence that one crops better, and among many pairs about one in twenty
will exclude 0 by chance. Model predictions are cached
(``$GAZECROP_CACHE/cropeval/<model version>/``) so that trying crop options takes seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

import cv2
import numpy as np

from gazecrop.tools.data import DEFAULT_DATASET, default_cache_dir, read_fixations, read_image_list
from gazecrop.model.images import read_image_rgb, resize_for_model
from gazecrop.model.predict import predict_with_faces
from gazecrop.search import CropConfig, Focus, choose_crops, parse_aspect_ratios, ratio_label, window_sizes
from gazecrop.transforms.focus import read_focus_table

METHODS = ("gazecrop", "centre", "best", "smartcrop", "vips-attention", "vips-entropy",
           "spectral-residual")
#: ``evaluate(focus=FIXATION_PEAK)``: each image's most fixated point is its focus (exploration).
FIXATION_PEAK = "fixation-peak"
OPTIONAL = {"smartcrop": "smartcrop", "vips-attention": "pyvips", "vips-entropy": "pyvips"}
#: The methods scored beside ``--boxes`` tables unless ``--methods`` says otherwise (the gain's two ends).
BASELINES_FOR_TABLES = ("centre", "best")


# ----------------------------------------------------------------------------------------------
# Fixations and boxes
# ----------------------------------------------------------------------------------------------

def fixation_share(rows, cols, boxes) -> np.ndarray:
    """Share of fixated pixels (rows, cols) inside each box (x, y, width, height): (K, 4) -> (K,)."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(rows) == 0:
        return np.full(len(boxes), np.nan)
    x, y, w, h = (boxes[:, i:i + 1] for i in range(4))
    inside = (cols[None] >= x) & (cols[None] < x + w) & (rows[None] >= y) & (rows[None] < y + h)
    return inside.mean(axis=1)


def centre_boxes(width, height, windows) -> np.ndarray:
    """Centred windows: ``windows`` (R, 2) of (w, h) -> (R, 4) boxes."""
    windows = np.asarray(windows, dtype=np.int64)
    return np.stack([(width - windows[:, 0]) // 2, (height - windows[:, 1]) // 2,
                     windows[:, 0], windows[:, 1]], axis=1)


def best_boxes(rows, cols, width, height, windows) -> np.ndarray:
    """Windows holding the most fixations (exhaustive over integer offsets; ties to the centre)."""
    counts = np.zeros((height, width), np.int64)
    np.add.at(counts, (rows, cols), 1)
    sat = np.zeros((height + 1, width + 1), np.int64)
    np.cumsum(np.cumsum(counts, axis=0), axis=1, out=sat[1:, 1:])
    out = []
    for w, h in np.asarray(windows, dtype=np.int64):     # per ratio (a handful)
        ys = np.arange(height - h + 1)[:, None]
        xs = np.arange(width - w + 1)[None, :]
        n = sat[ys + h, xs + w] - sat[ys, xs + w] - sat[ys + h, xs] + sat[ys, xs]
        dist = (xs - (width - w) / 2) ** 2 + (ys - (height - h) / 2) ** 2
        key = np.where(n == n.max(), dist, np.inf)
        y, x = np.unravel_index(int(np.argmin(key)), key.shape)
        out.append((x, y, w, h))
    return np.asarray(out, dtype=np.int64)


def place_window(cx, cy, width, height, w, h):
    """The (w, h) window centred as near (cx, cy) as the source allows."""
    x = int(np.clip(round(cx - w / 2), 0, width - w))
    y = int(np.clip(round(cy - h / 2), 0, height - h))
    return x, y, int(w), int(h)


# ----------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------

def spectral_residual_log_density(rgb, size=64) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang 2007) as a (size, size) log-density.

    The steps of OpenCV's ``StaticSaliencySpectralResidual`` (not in the headless wheel): grey image
    at 64x64, log amplitude spectrum minus its 3x3 mean, back with the phase, squared magnitude,
    Gaussian blur.
    """
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(grey)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3), borderType=cv2.BORDER_REPLICATE)
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = cv2.GaussianBlur(saliency, (5, 5), 8)
    saliency = np.maximum(saliency, 1e-12 * saliency.max() + 1e-30)
    return (np.log(saliency) - np.log(saliency.sum())).astype(np.float32)


def smartcrop_boxes(rgb, windows) -> np.ndarray:
    """smartcrop.py at the largest scale (``min_scale = max_scale = 1``), one window per ratio.

    smartcrop.py floors its window size; its crop's centre is kept and our exact window placed there.
    """
    import smartcrop
    from PIL import Image

    image = Image.fromarray(rgb)
    cropper = smartcrop.SmartCrop()
    height, width = rgb.shape[:2]
    out = []
    for w, h in np.asarray(windows, dtype=np.int64):
        top = cropper.crop(image, int(w), int(h), min_scale=1.0, max_scale=1.0)["top_crop"]
        out.append(place_window(top["x"] + top["width"] / 2, top["y"] + top["height"] / 2,
                                width, height, w, h))
    return np.asarray(out, dtype=np.int64)


def vips_boxes(rgb, windows, interesting) -> np.ndarray:
    """libvips ``smartcrop`` (``interesting`` = attention | entropy); its offset is -xoffset."""
    pyvips = _import_pyvips()

    height, width = rgb.shape[:2]
    image = pyvips.Image.new_from_memory(np.ascontiguousarray(rgb).data, width, height, 3, "uchar")
    out = []
    for w, h in np.asarray(windows, dtype=np.int64):
        crop = image.smartcrop(int(w), int(h), interesting=interesting)
        out.append((-crop.xoffset, -crop.yoffset, int(w), int(h)))
    return np.asarray(out, dtype=np.int64)


def _import_pyvips():
    """Imports pyvips, after h5py: Debian's libvips links the system libhdf5 (through libmatio),
    and once that is loaded h5py's own copy fails ("Not a datatype"); the other order works."""
    try:
        import h5py  # noqa: F401
    except ImportError:
        pass
    import pyvips
    return pyvips


def available(method) -> Optional[str]:
    """None when the method can run, else why not."""
    module = OPTIONAL.get(method)
    if module is None:
        return None
    try:
        _import_pyvips() if module == "pyvips" else __import__(module)
    except Exception as e:  # ImportError, or OSError when libvips is absent
        return f"needs {module} ({type(e).__name__}: {e})".splitlines()[0]
    return None


# ----------------------------------------------------------------------------------------------
# The model, with a prediction cache
# ----------------------------------------------------------------------------------------------

class Predictor:
    """Log-density of an image under a saliency model, cached per model version and image."""

    def __init__(self, model_name, cache_dir: Optional[Path]):
        """``model_name``: a ``load_model`` spec, or a ``SaliencyModel`` already loaded."""
        from gazecrop.model import load_model

        self.model = load_model(model_name) if isinstance(model_name, (str, Path)) else model_name
        self.cache = None if cache_dir is None else Path(cache_dir) / "cropeval" / self.model.version
        self.seconds = 0.0        # model time of the predictions made (not of cache hits)
        self.computed = 0

    def __call__(self, name, rgb) -> np.ndarray:
        return self.with_faces(name, rgb)[0]

    def with_faces(self, name, rgb):
        """The log-density and the faces the model's face prior found ((K, 5), normalised; None without a prior),
        as the pipeline's inference stage gives them to its crop stage. The faces are cached beside the map
        (``.faces.npy``)."""
        size = self.model.input_size(*rgb.shape[:2])
        path = faces_path = None
        prior = getattr(self.model, "face_prior", None) is not None
        if self.cache is not None:
            path = self.cache / f"{name}.{size[0]}x{size[1]}.npy"
            faces_path = path.with_suffix(".faces.npy")
            if path.is_file() and (not prior or faces_path.is_file()):
                return np.load(path), (np.load(faces_path) if prior else None)
        start = time.perf_counter()
        log_densities, faces = predict_with_faces(self.model, [resize_for_model(rgb, size)])
        log_density, found = log_densities[0], faces[0]
        self.seconds += time.perf_counter() - start
        self.computed += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            for file, array in ((path, log_density), (faces_path, found)):
                if array is not None:
                    tmp = file.with_suffix(".tmp.npy")
                    np.save(tmp, array)
                    tmp.replace(file)
        return log_density, found


# ----------------------------------------------------------------------------------------------
# Crops a pipeline run wrote (--boxes)
# ----------------------------------------------------------------------------------------------

#: The metadata columns ``read_boxes`` needs (``gazecrop.transforms.metadata.METADATA_SCHEMA``).
BOX_COLUMNS = ("source_uri", "source_width", "source_height", "aspect_ratio", "rank",
               "crop_x", "crop_y", "crop_width", "crop_height")


class TableBoxes(NamedTuple):
    """The rank-0 crops of one source in a metadata table."""
    source_uri: str
    width: int               # the source as the pipeline saw it (after EXIF orientation)
    height: int
    boxes: dict              # ratio label "16:9" -> (x, y, width, height)


def read_boxes(path) -> dict:
    """A ``gazecrop run`` metadata table (a Parquet file, or a folder of them such as ``ROOT/metadata``)
    -> {file name: ``TableBoxes``} of its rank-0 crops.

    Images are named by the last part of ``source_uri``, as the dataset's stimuli are. Two sources with the
    same file name, or two different rank-0 boxes for one source and ratio (a table gathered from runs with
    other settings), raise ``ValueError``: the score would depend on which one was taken.
    """
    import pyarrow.dataset as ds

    path = Path(path)
    if not path.exists():
        raise ValueError(f"--boxes: no such file or folder: {path}")
    table = ds.dataset(str(path), format="parquet").to_table(columns=list(BOX_COLUMNS))
    columns = {c: table.column(c).to_pylist() for c in BOX_COLUMNS}
    out: dict = {}
    for i in range(table.num_rows):
        if columns["rank"][i] != 0:
            continue
        uri = columns["source_uri"][i]
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        entry = out.setdefault(name, TableBoxes(uri, int(columns["source_width"][i]),
                                                int(columns["source_height"][i]), {}))
        if entry.source_uri != uri:
            raise ValueError(f"--boxes {path}: two sources named {name!r} ({entry.source_uri}, {uri}); "
                             f"images are matched to the dataset by file name")
        box = tuple(int(columns[c][i]) for c in ("crop_x", "crop_y", "crop_width", "crop_height"))
        label = columns["aspect_ratio"][i]
        if entry.boxes.setdefault(label, box) != box:
            raise ValueError(f"--boxes {path}: {uri} has two rank-0 {label} crops ({entry.boxes[label]}, {box}); "
                             f"give one run's table")
    return out


def table_boxes(entry: Optional[TableBoxes], labels) -> tuple[Optional[np.ndarray], Optional[str]]:
    """(R, 4) boxes of ``entry`` in the order of ``labels``, or (None, why not)."""
    if entry is None:
        return None, "no row in the table"
    absent = [label for label in labels if label not in entry.boxes]
    if absent:
        return None, f"no rank-0 crop for {', '.join(absent)}"
    return np.asarray([entry.boxes[label] for label in labels], dtype=np.int64), None


def _parse_boxes_arg(values) -> dict:
    """``--boxes [LABEL=]TABLE`` (repeatable) -> {row name: table path}: ``table`` alone, ``table (LABEL)``
    with a label, ``table (<path>)`` when several tables have none."""
    out = {}
    for value in values or ():
        label, sep, path = value.partition("=")
        if not sep or not label or "/" in label:
            label, path = "", value
        name = f"table ({label})" if label else ("table" if len(values) == 1 else f"table ({path})")
        if name in out:
            raise SystemExit(f"--boxes: two tables named {name!r}; label them LABEL=TABLE")
        out[name] = path
    return out


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    ratios: tuple
    names: list
    shares: dict            # method -> (N, R) share of fixations kept
    seconds: dict           # method -> total seconds
    skipped: dict           # method -> reason
    model_version: str = ""
    predicted: int = 0      # model predictions made (the rest came from the cache)
    missing: dict = dataclasses.field(default_factory=dict)   # image -> why a --boxes table cannot score it


def read_focus(path) -> dict:
    """Focus table (CSV or Parquet: image, x, y[, width, height]) -> {image: Focus}."""
    return read_focus_table(str(path), key="image")


class _Stimulus(NamedTuple):
    """One image of the dataset as every method sees it."""
    name: str
    rgb: np.ndarray
    width: int
    height: int
    rows: np.ndarray         # fixated pixels
    cols: np.ndarray
    windows: np.ndarray      # (R, 2): the largest window of each ratio


def read_stimulus(dataset: Path, name, fixations, ratios) -> _Stimulus:
    """The image ``name`` of ``dataset``, its fixations in its pixels and its largest windows."""
    if name not in fixations:
        raise ValueError(f"image {name!r} has no fixations in {dataset / 'fixations.csv'}")
    rgb = read_image_rgb(dataset / "stimuli" / name)
    height, width = rgb.shape[:2]
    rows, cols = fixations[name].int_coords(height, width)
    windows = window_sizes([(width, height)], ratios)[0, :, 0]          # (R, 2)
    return _Stimulus(name, rgb, width, height, rows, cols, windows)


class _Tally:
    """The shares and seconds of each method, image by image, and the predictor's counters at the start
    (its model time and predictions are counted from there)."""

    def __init__(self, active, predictor: Optional[Predictor], any_rank: bool):
        self.shares = {m: [] for m in active}
        self.seconds = {m: 0.0 for m in active}
        if any_rank:
            self.shares["gazecrop-any-rank"] = []
            self.seconds["gazecrop-any-rank"] = 0.0
        self.predictor = predictor
        self.model_seconds_before = predictor.seconds if predictor is not None else 0.0
        self.computed_before = predictor.computed if predictor is not None else 0
        self.names = []

    def result(self, ratios, skipped) -> Result:
        predictor, used = self.predictor, self.names
        if predictor is not None:
            self.seconds["gazecrop"] += predictor.seconds - self.model_seconds_before
        return Result(ratios=ratios, names=used,
                      shares={m: np.asarray(v, dtype=np.float64).reshape(len(used), len(ratios))
                              for m, v in self.shares.items()},
                      seconds=self.seconds, skipped=skipped,
                      model_version=predictor.model.version if predictor else "",
                      predicted=predictor.computed - self.computed_before if predictor else 0)


def evaluate(dataset, names, config: CropConfig, *, methods=METHODS, model="default",
             cache_dir=None, focus=None, log=None, tables=None) -> Result:
    """Runs every method on every image; see the module docstring.

    ``model`` is a ``load_model`` name or path, or a ``Predictor`` (reused across calls when trying
    crop options); ``focus`` is None, {image name: Focus} or ``FIXATION_PEAK``; ``tables`` is None or
    {row name: ``read_boxes`` result}: crops already made, scored as rows of their own. Images that a
    table cannot score (``table_boxes``) are left out of every row and listed in ``Result.missing``.
    Steps per image: ``read_stimulus``, then ``gazecrop_crops`` or ``baseline_boxes`` per method and
    ``table_boxes`` per table, scored by ``fixation_share``.
    """
    dataset = Path(dataset)
    fixations = read_fixations(dataset)
    skipped = {m: why for m in methods if (why := available(m))}
    active = [m for m in methods if m not in skipped]
    predictor = None
    if "gazecrop" in active:
        predictor = model if isinstance(model, Predictor) else Predictor(model, cache_dir)
    tally = _Tally(active, predictor, any_rank="gazecrop" in active and config.candidates > 1)
    tables = tables or {}
    labels = [ratio_label(r) for r in config.aspect_ratios]
    for row in tables:
        tally.shares[row], tally.seconds[row] = [], 0.0
    missing = {}
    spectral_config = CropConfig(aspect_ratios=config.aspect_ratios)
    for i, name in enumerate(names):
        found = {row: table_boxes(table.get(name), labels) for row, table in tables.items()}
        why = "; ".join(f"{row}: {reason}" for row, (_, reason) in found.items() if reason)
        if why:
            missing[name] = why
            continue
        image = read_stimulus(dataset, name, fixations, config.aspect_ratios)
        for row, (boxes, _) in found.items():
            entry = tables[row][name]
            if (entry.width, entry.height) != (image.width, image.height):
                raise ValueError(f"{row}: {entry.source_uri} is {entry.width}x{entry.height} in the table but "
                                 f"{dataset / 'stimuli' / name} is {image.width}x{image.height}: not the same image")
            tally.shares[row].append(fixation_share(image.rows, image.cols, boxes))
        tally.names.append(name)
        for method in active:
            if method == "gazecrop":
                gazecrop_crops(image, predictor, config, focus, tally)
                continue
            start = time.perf_counter()
            boxes = baseline_boxes(method, image, spectral_config)
            tally.seconds[method] += time.perf_counter() - start
            tally.shares[method].append(fixation_share(image.rows, image.cols, boxes))
        if log and (i + 1) % 20 == 0:
            log(f"  {i + 1}/{len(names)} images")
    return dataclasses.replace(tally.result(config.aspect_ratios, skipped), missing=missing)


def gazecrop_crops(image: _Stimulus, predictor: Predictor, config: CropConfig, focus, tally: _Tally) -> None:
    """The model's crops of one image, scored into ``tally``: the share of the main crops (rank 0), and with
    ``candidates > 1`` the best rank's share per ratio (``gazecrop-any-rank``). Timed: the crop search
    here, the model in ``Predictor``."""
    log_density, faces = predictor.with_faces(image.name, image.rgb)
    t0 = time.perf_counter()
    if focus == FIXATION_PEAK:
        hint = fixation_peak(image.rows, image.cols, image.width, image.height)
    else:
        hint = None if focus is None else focus.get(image.name)
    crops = choose_crops(log_density[None], [(image.width, image.height)], config, focus=[hint], faces=[faces])[0]
    tally.seconds["gazecrop"] += time.perf_counter() - t0
    boxes = [(c.x, c.y, c.width, c.height) for c in crops if c.rank == 0]
    if "gazecrop-any-rank" in tally.shares:
        any_rank = []
        for label in (ratio_label(r) for r in config.aspect_ratios):
            cand = [(c.x, c.y, c.width, c.height) for c in crops if c.aspect_ratio == label]
            any_rank.append(fixation_share(image.rows, image.cols, cand).max())
        tally.shares["gazecrop-any-rank"].append(any_rank)
    tally.shares["gazecrop"].append(fixation_share(image.rows, image.cols, boxes))


def baseline_boxes(method, image: _Stimulus, spectral_config: CropConfig):
    """The boxes (one per ratio) a method other than gazecrop chooses for one image."""
    if method == "centre":
        return centre_boxes(image.width, image.height, image.windows)
    if method == "best":
        return best_boxes(image.rows, image.cols, image.width, image.height, image.windows)
    if method == "smartcrop":
        return smartcrop_boxes(image.rgb, image.windows)
    if method == "vips-attention":
        return vips_boxes(image.rgb, image.windows, "attention")
    if method == "vips-entropy":
        return vips_boxes(image.rgb, image.windows, "entropy")
    if method == "spectral-residual":
        crops = choose_crops(spectral_residual_log_density(image.rgb)[None], [(image.width, image.height)],
                             spectral_config)[0]
        return [(c.x, c.y, c.width, c.height) for c in crops]
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def with_model_rows(result: Result, spec: str, other: Optional[Result] = None) -> Result:
    """``result`` with its gazecrop rows renamed ``gazecrop (<spec>)``, or, given ``other`` (a
    run of the gazecrop method alone with the model ``spec`` on the same images), with other's
    gazecrop rows added under that name."""
    source = other if other is not None else result
    shares = {m: v for m, v in result.shares.items() if other is not None or not m.startswith("gazecrop")}
    seconds = {m: v for m, v in result.seconds.items() if other is not None or not m.startswith("gazecrop")}
    for method in [m for m in source.shares if m.startswith("gazecrop")]:
        shares[f"{method} ({spec})"] = source.shares[method]
        seconds[f"{method} ({spec})"] = source.seconds[method]
    return dataclasses.replace(result, shares=shares, seconds=seconds)


#: Resamples of the images for the gain's confidence intervals (``--bootstrap``; 0: none).
BOOTSTRAP = 2000
#: The intervals' coverage: the central 95% of the resampled gains.
CONFIDENCE = 0.95


def gain_terms(result: Result, method) -> Optional[tuple]:
    """The gain's terms per image and ratio: ((N, R) share - centre, (N, R) best - centre), 0 where any of
    the three is undefined (an image without fixations); None without the centre and best rows."""
    centre, best, share = result.shares.get("centre"), result.shares.get("best"), result.shares[method]
    if centre is None or best is None or not share.size:
        return None
    ok = ~np.isnan(share) & ~np.isnan(centre) & ~np.isnan(best)
    return np.where(ok, share - centre, 0.0), np.where(ok, best - centre, 0.0)


def bootstrap_gains(result: Result, resamples=BOOTSTRAP, seed=0) -> dict:
    """{method: (resamples,) pooled gains}, each on the same resampled image lists (images drawn with
    replacement, all ratios of an image together), so that two methods' gains can be compared draw by draw
    (a paired bootstrap: the images that are hard for one are hard for the other)."""
    n = len(result.names)
    if resamples <= 0 or n < 2:
        return {}
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    out = {}
    for method in result.shares:
        terms = gain_terms(result, method)
        if terms is not None:
            num, den = (t.sum(1)[draws].sum(1) for t in terms)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[method] = np.where(den > 0, num / den, np.nan)
    return out


def interval(samples) -> list:
    """The central ``CONFIDENCE`` interval of bootstrap samples, [low, high]."""
    tail = (1 - CONFIDENCE) / 2 * 100
    return np.nanpercentile(samples, [tail, 100 - tail]).tolist()


def compared_rows(result: Result) -> list:
    """The rows worth comparing with each other: the model's and the tables' (not the baselines, not the
    any-rank rows, which are a reviewer's pick)."""
    return [m for m in result.shares
            if (m.startswith("gazecrop") or m.startswith("table")) and not m.startswith("gazecrop-any-rank")]


def differences(result: Result, samples: dict) -> list:
    """For each pair of ``compared_rows`` (a, b): (a, b, gain a - gain b, its paired bootstrap interval)."""
    rows = [m for m in compared_rows(result) if m in samples]
    summary = summarise(result, resamples=0)
    return [(a, b, summary[a]["gain"] - summary[b]["gain"], interval(samples[a] - samples[b]))
            for i, a in enumerate(rows) for b in rows[i + 1:]]


def summarise(result: Result, resamples=BOOTSTRAP, samples: Optional[dict] = None) -> dict:
    """Per method: mean share per ratio and overall, gain per ratio and pooled, seconds per image, and the
    pooled gain's bootstrap interval over images (``gain_ci``; ``samples`` from ``bootstrap_gains``, or drawn
    here with ``resamples``)."""
    out = {}
    n = max(len(result.names), 1)
    if samples is None:
        samples = bootstrap_gains(result, resamples)
    for method, share in result.shares.items():
        per_ratio = np.nanmean(share, axis=0) if share.size else np.full(len(result.ratios), np.nan)
        row = {"per_ratio": per_ratio.tolist(), "mean": float(np.nanmean(share)) if share.size else None,
               "seconds_per_image": result.seconds.get(method, 0.0) / n}
        terms = gain_terms(result, method)
        if terms is not None:
            num, den = terms
            with np.errstate(invalid="ignore", divide="ignore"):
                row["gain_per_ratio"] = (num.sum(0) / den.sum(0)).tolist()
                row["gain"] = float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")
            if method in samples:
                row["gain_ci"] = interval(samples[method])
        out[method] = row
    return out


def format_table(result: Result, summary: dict) -> str:
    labels = [ratio_label(r) for r in result.ratios]
    with_ci = any("gain_ci" in row for row in summary.values())
    head = ["method", *labels, "mean", "gain", *([f"gain {CONFIDENCE:.0%} CI"] if with_ci else []),
            *[f"gain {l}" for l in labels], "s/image"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for method, row in summary.items():
        gains = row.get("gain_per_ratio", [float("nan")] * len(labels))
        ci = [_interval_text(row["gain_ci"]) if "gain_ci" in row else ""] if with_ci else []
        cells = [method, *[f"{v:.3f}" for v in row["per_ratio"]], f"{row['mean']:.3f}",
                 f"{row.get('gain', float('nan')):+.3f}", *ci, *[f"{g:+.3f}" for g in gains],
                 f"{row['seconds_per_image']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for method, why in result.skipped.items():
        lines.append(f"(skipped {method}: {why})")
    if result.missing:
        shown = [f"{name} ({why})" for name, why in list(result.missing.items())[:10]]
        more = f", and {len(result.missing) - 10} more" if len(result.missing) > 10 else ""
        lines.append(f"(missing: {len(result.missing)} images left out of every row: {', '.join(shown)}{more})")
    return "\n".join(lines)


def _interval_text(bounds) -> str:
    return f"[{bounds[0]:+.3f}, {bounds[1]:+.3f}]"


def format_differences(pairs) -> str:
    """One line per pair of ``differences``: the gain difference and its paired bootstrap interval; an
    interval that straddles 0 means these images cannot tell the two apart."""
    lines = []
    for a, b, diff, (low, high) in pairs:
        verdict = f"{a} better" if low > 0 else f"{b} better" if high < 0 else "no clear difference"
        lines.append(f"gain {a} - {b}: {diff:+.3f}, {CONFIDENCE:.0%} paired bootstrap interval "
                     f"{_interval_text((low, high))} ({verdict})")
    return "\n".join(lines)


def _parser():
    p = argparse.ArgumentParser(prog="python -m gazecrop.tools.cropeval", description=__doc__.split("\n\n")[0])
    d = CropConfig()
    p.add_argument("--dataset", default=str(DEFAULT_DATASET),
                   help="dataset folder with stimuli/ and fixations.csv (default: %(default)s)")
    p.add_argument("--images", help="file of image names, one a line (default: every image with fixations)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--model", action="append",
                   help="load_model name ('default', 'fast', …) or weights path; repeatable, one "
                        "'gazecrop (<model>)' row each (default: default)")
    p.add_argument("--methods", help=f"comma-separated subset of: {','.join(METHODS)} (default: all; with "
                                      f"--boxes: centre,best)")
    p.add_argument("--boxes", action="append", metavar="[LABEL=]TABLE",
                   help="score the crops of a 'gazecrop run' metadata table (a Parquet file or ROOT/metadata) "
                        "as row 'table' ('table (LABEL)'); repeatable. Rows match the dataset's images by "
                        "file name; images without a rank-0 row for every ratio are reported as missing")
    p.add_argument("--ratios", "--aspect_ratios", dest="ratios", default="1:1,16:9,9:16,4:5",
                   help="aspect ratios (default: %(default)s)")
    p.add_argument("--min_scale", type=float, default=d.min_scale, help="CropConfig.min_scale (default: %(default)s)")
    p.add_argument("--scale_step", type=float, default=d.scale_step, help="CropConfig.scale_step (default: %(default)s)")
    p.add_argument("--area_weight", type=float, default=d.area_weight, help="CropConfig.area_weight (default: %(default)s)")
    p.add_argument("--candidates", type=int, default=d.candidates,
                   help="CropConfig.candidates (default: %(default)s); >1 adds 'gazecrop-any-rank' "
                        "(a reviewer picking the best rank)")
    p.add_argument("--candidate_overlap", type=float, default=d.candidate_overlap,
                   help="CropConfig.candidate_overlap (default: %(default)s)")
    p.add_argument("--border_weight", type=float, default=d.border_weight, help="CropConfig.border_weight (default: %(default)s)")
    p.add_argument("--border_band", type=float, default=d.border_band, help="CropConfig.border_band (default: %(default)s)")
    p.add_argument("--composition_weight", type=float, default=d.composition_weight,
                   help="CropConfig.composition_weight (default: %(default)s)")
    p.add_argument("--headroom_weight", type=float, default=d.headroom_weight,
                   help="CropConfig.headroom_weight (default: %(default)s; 0 = the plain best window)")
    p.add_argument("--headroom", type=float, default=d.headroom, help="CropConfig.headroom (default: %(default)s)")
    p.add_argument("--headroom_level", type=float, default=d.headroom_level,
                   help="CropConfig.headroom_level (default: %(default)s)")
    p.add_argument("--face_weight", type=float, default=d.face_weight,
                   help="CropConfig.face_weight (default: %(default)s; 0 = crops ignore the face boxes)")
    p.add_argument("--face_limit", type=float, default=d.face_limit,
                   help="CropConfig.face_limit (default: %(default)s)")
    p.add_argument("--face_head", type=float, default=d.face_head, help="CropConfig.face_head (default: %(default)s)")
    p.add_argument("--face_room", type=float, default=d.face_room, help="CropConfig.face_room (default: %(default)s)")
    p.add_argument("--tie_tolerance", type=float, default=d.tie_tolerance, help="CropConfig.tie_tolerance (default: %(default)s)")
    p.add_argument("--focus", help="CSV or Parquet with columns image, x, y[, width, height]: a region "
                                   "each gazecrop crop must contain")
    p.add_argument("--focus_from_fixations", action="store_true",
                   help="exploration: use each image's most fixated point as the focus "
                        "(a stand-in for a person's click)")
    p.add_argument("--cache", default=None,
                   help="prediction cache root (default: $GAZECROP_CACHE or ~/.cache/gazecrop)")
    p.add_argument("--no_cache", action="store_true", help="always run the model")
    p.add_argument("--json", help="also write the per-image shares and the summary here")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP,
                   help="resamples of the images for the gains' 95%% intervals, and the paired intervals of "
                        "the differences between model and table rows (default: %(default)s; 0: none)")
    return p


def fixation_peak(rows, cols, width, height, sigma_fraction=0.05) -> Focus:
    """The most fixated point: the peak of the fixation histogram blurred by 5% of the long side."""
    cell = max(1, max(width, height) // 128)
    hist = np.zeros((height // cell + 1, width // cell + 1))
    np.add.at(hist, (rows // cell, cols // cell), 1.0)
    sigma = sigma_fraction * max(width, height) / cell
    i, j = np.unravel_index(int(np.argmax(cv2.GaussianBlur(hist, (0, 0), sigma))), hist.shape)
    return Focus(float(min(width - 1, j * cell + cell // 2)), float(min(height - 1, i * cell + cell // 2)))


def main(argv=None) -> int:
    """Steps: ``crop_config`` and ``image_names`` from the arguments -> ``evaluate_models`` ->
    ``summarise`` -> the table printed (and the ``--json`` file)."""
    args = _parser().parse_args(argv)
    config = crop_config(args)
    methods_text = args.methods or (",".join(BASELINES_FOR_TABLES) if args.boxes else ",".join(METHODS))
    methods = [m.strip() for m in methods_text.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; expected some of {','.join(METHODS)}")
    dataset = Path(args.dataset)
    names = image_names(args, dataset)
    focus = read_focus(args.focus) if args.focus else None
    if args.focus_from_fixations:
        focus = FIXATION_PEAK
    cache = None if args.no_cache else (Path(args.cache) if args.cache else default_cache_dir())
    start = time.perf_counter()
    specs = args.model or ["default"]
    tables = {row: read_boxes(path) for row, path in _parse_boxes_arg(args.boxes).items()}
    result, versions = evaluate_models(dataset, names, config, methods, specs, cache, focus, tables)
    samples = bootstrap_gains(result, args.bootstrap)
    summary = summarise(result, samples=samples)
    pairs = differences(result, samples)
    models = f"model {', '.join(versions)}" if "gazecrop" in methods else "no model"
    print(f"dataset {dataset} ({len(result.names)} images), {models}, {config}")
    print("share of fixations kept per ratio, mean; gain = (method - centre) / (best - centre)")
    print(format_table(result, summary))
    if samples:
        print(f"gain {CONFIDENCE:.0%} CI: the central {CONFIDENCE:.0%} of the pooled gain over {args.bootstrap} "
              f"resamples of the {len(result.names)} images (all ratios of an image together)")
        if compared := format_differences(pairs):
            print(compared)
    if "gazecrop" in methods:
        print(f"gazecrop s/image includes the model for the images not in the prediction cache "
              f"({result.predicted} of {len(result.names)} for {specs[0]}; --no_cache times them all)")
    print(f"total {time.perf_counter() - start:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "dataset": str(dataset), "model": specs[0] if len(specs) == 1 else specs,
            "model_version": result.model_version if len(specs) == 1 else versions,
            "config": dataclasses.asdict(config), "images": result.names,
            "shares": {m: v.tolist() for m, v in result.shares.items()},
            "summary": summary, "skipped": result.skipped,
            "differences": [{"a": a, "b": b, "gain_difference": d, "ci": ci}
                            for a, b, d, ci in pairs],
            "boxes": _parse_boxes_arg(args.boxes), "missing": result.missing}, indent=1, default=str))
    return 0


def crop_config(args) -> CropConfig:
    """The ``CropConfig`` the command line asks for."""
    return CropConfig(aspect_ratios=parse_aspect_ratios(args.ratios), min_scale=args.min_scale,
                      scale_step=args.scale_step, area_weight=args.area_weight, candidates=args.candidates,
                      candidate_overlap=args.candidate_overlap, border_weight=args.border_weight,
                      border_band=args.border_band, composition_weight=args.composition_weight,
                      headroom_weight=args.headroom_weight, headroom=args.headroom,
                      headroom_level=args.headroom_level, face_weight=args.face_weight, face_limit=args.face_limit,
                      face_head=args.face_head, face_room=args.face_room, tie_tolerance=args.tie_tolerance)


def image_names(args, dataset: Path) -> list:
    """``--images`` (or every image with fixations), cut to ``--limit``."""
    if args.images:
        names = read_image_list(args.images)
    else:
        names = sorted(read_fixations(dataset))
    if args.limit:
        names = names[:args.limit]
    return names


def evaluate_models(dataset, names, config, methods, specs, cache, focus, tables=None):
    """Every method (and the ``--boxes`` tables) with the first ``--model``, then the gazecrop method with
    each further model on the same images, one ``gazecrop (<model>)`` row each. Returns the result and
    ``"<spec> <version>"`` per model."""
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result = evaluate(dataset, names, config, methods=methods, model=specs[0], cache_dir=cache,
                      focus=focus, log=log, tables=tables)
    versions = [f"{specs[0]} {result.model_version}"]
    if len(specs) > 1 and "gazecrop" in methods:
        result = with_model_rows(result, specs[0])
        for spec in specs[1:]:
            other = evaluate(dataset, result.names, config, methods=("gazecrop",), model=spec,
                             cache_dir=cache, focus=focus, log=log)
            result = with_model_rows(result, spec, other)
            versions.append(f"{spec} {other.model_version}")
    return result, versions


if __name__ == "__main__":
    sys.exit(main())
