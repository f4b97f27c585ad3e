"""Write stage: cut each crop from the full-resolution source, encode it, write it, describe it.

Layout under the output root ROOT (any Beam filesystem: local, gs://, s3://):

* `ROOT/crops/<ratio_dirname>/<relpath>.<ext>`: one file per image and ratio, `<relpath>` being the
  source's path relative to its input root, file name and extension included (`kodak/kodim01.png` ->
  `crops/16x9/kodak/kodim01.png.jpg`), so two sources never share an output.
* `ROOT/crops/<ratio_dirname>/<relpath>.rank<k>.<ext>`: with --candidates > 1, the rank-k candidate
  (k >= 1) of that ratio (`crops/16x9/kodak/kodim01.png.rank1.jpg`); rank 0 keeps the name above.
  (`gazecrop.paths` escapes a source name's own `.rank<k>` ending, so source `a.rank1`'s crop is
  never the rank-1 crop of source `a`.)
* `ROOT/saliency/<relpath>.npy` (with `--save_saliency`): the float32 log-density at model resolution.
* `ROOT/saliency/<relpath>.png` (by default; `--saliency_preview=false` turns it off): a small preview of
  the same map for `gazecrop report`'s heat map, a grey PNG whose long side is at most
  `PREVIEW_LONG_SIDE` pixels, each pixel 255 x the density there relative to the map's peak
  (`saliency_preview`). A few kilobytes per image; it changes no crop and no metadata row.

Every file is written to a temporary name beside its final path and renamed into place, so no reader
ever sees a truncated file at a final path. Encoding is deterministic (fixed encoder parameters, no
timestamps or EXIF), so a rerun over the same input and model rewrites the same bytes.

Speed: the crops of a source of up to `PARALLEL_MAX_MEGAPIXELS` are encoded and written by a small
thread pool (OpenCV's encoders and the filesystem clients release the GIL); larger sources' crops one
after another, so that a worker holds at most two full-size copies of a large image (the decoded source
and the crop being encoded). With --max_output_side, a JPEG source whose every crop is shrunk at least
2x is decoded at 1/2, 1/4 or 1/8 scale (`write_reduction`). `python -m gazecrop.tools.bench` prints the write
stage's time per image.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import apache_beam as beam
import cv2
import numpy as np
from apache_beam.io.filesystems import FileSystems

from gazecrop.search import Crop, CropConfig, Focus, parse_aspect_ratios, ratio_dirname
from gazecrop.decode import DEFAULT_MAX_MEGAPIXELS, check_size, decode_pixels, read_header
from gazecrop.encode import PNG_COMPRESSION, cut, encode, output_size
from gazecrop.paths import check_relpath
from gazecrop.transforms.metadata import metadata_row
# `join` lives in read.py (metadata.py needs it and this module imports metadata.py); imported from here too.
from gazecrop.transforms.read import absolute_uri, join
from gazecrop.records import CroppedImage, SaliencyImage, from_epoch_us, now_utc
from gazecrop.transforms.dead_letters import dead_letter_rows

OUTPUT_FORMATS = ("jpeg", "png", "webp", "source")

# File extension of each encoder; "source" keeps JPEG, PNG and WebP sources in their format and writes
# every other source format (GIF, TIFF, BMP, ...) as PNG.
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_SOURCE_FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """How crops are written (the --output_format, --jpeg_quality, --max_output_side, --save_saliency,
    --saliency_preview options).

    Attributes:
      root: output root ROOT (a local path or a filesystem URI).
      output_format: "jpeg", "png", "webp" or "source" (the source's format where it is JPEG, PNG or
        WebP, PNG otherwise).
      jpeg_quality: 1-100, for JPEG and (lossy) WebP outputs.
      max_output_side: downscale a crop so its longer side is at most this many pixels (0: never);
        crops are never upscaled.
      save_saliency: also write each image's log-density map (`ROOT/saliency/<relpath>.npy`).
      saliency_preview: also write a small 8-bit preview of that map (`ROOT/saliency/<relpath>.png`,
        what `gazecrop report` draws its heat map from).
      max_megapixels: the decompression-bomb guard, applied again to the full-resolution decode.
    """
    root: str
    output_format: str = "jpeg"
    jpeg_quality: int = 90
    max_output_side: int = 0
    save_saliency: bool = False
    saliency_preview: bool = True
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS

    def __post_init__(self):
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}. "
                             f"Received: output_format={self.output_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100. Received: jpeg_quality={self.jpeg_quality}")
        if self.max_output_side < 0:
            raise ValueError(f"max_output_side must be >= 0. Received: max_output_side={self.max_output_side}")


# OutputConfig fields that do not change what a crop is (where it goes, which inputs are refused: a
# refused image has no metadata rows to reuse; whether a preview of the map is written beside it).
_NOT_SHAPING_OUTPUT = ("root", "max_megapixels", "saliency_preview")


def settings_id(crop_config: CropConfig, output: OutputConfig) -> str:
    """A short fingerprint of every option that shapes a crop: the whole crop search and how crops are
    encoded. Two runs with equal fingerprints (and one model) make the same crops."""
    output_fields = {k: v for k, v in dataclasses.asdict(output).items() if k not in _NOT_SHAPING_OUTPUT}
    settings = {"crop": dataclasses.asdict(crop_config), "output": output_fields}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def image_config_id(settings: str, focus: Focus | None) -> str:
    """The `config_id` column: the job's `settings_id` plus this image's --focus hint, if any."""
    if focus is None:
        return settings
    hint = json.dumps(dataclasses.asdict(focus), sort_keys=True)
    return hashlib.sha256(f"{settings} {hint}".encode()).hexdigest()[:16]


def crop_uri(root: str, ratio_dir: str, relpath: str, extension: str, rank: int = 0) -> str:
    """`ROOT/crops/<ratio_dir>/<relpath>.<ext>` for rank 0, `<relpath>.rank<k>.<ext>` for rank k > 0."""
    suffix = f".rank{rank}" if rank else ""
    return join(root, "crops", ratio_dir, f"{check_relpath(relpath)}{suffix}.{extension}")


def saliency_uri(root: str, relpath: str) -> str:
    """`ROOT/saliency/<relpath>.npy`: the full log-density map (--save_saliency)."""
    return join(root, "saliency", f"{check_relpath(relpath)}.npy")


def saliency_preview_uri(root: str, relpath: str) -> str:
    """`ROOT/saliency/<relpath>.png`: the map's small 8-bit preview (`saliency_preview`)."""
    return join(root, "saliency", f"{check_relpath(relpath)}.png")


# Long side of a saliency preview, pixels. The map is a smooth density (the model ends with a wide
# Gaussian blur), so 128 pixels keep its shape; the report draws it over a 480-pixel thumbnail with
# bilinear interpolation.
PREVIEW_LONG_SIDE = 128


def relative_density(log_density: np.ndarray) -> np.ndarray:
    """float32 density relative to its peak, in [0, 1] (0 where the map is not finite or all -inf)."""
    ld = np.asarray(log_density, dtype=np.float64)
    ld = np.where(np.isfinite(ld), ld, -np.inf)
    peak = ld.max()
    if not np.isfinite(peak):
        return np.zeros(ld.shape, np.float32)
    return np.exp(ld - peak).astype(np.float32)


def saliency_preview(log_density: np.ndarray, long_side: int = PREVIEW_LONG_SIDE) -> bytes:
    """A grey 8-bit PNG of `relative_density(log_density)` (0..255), shrunk to `long_side` (area
    averaging, then rescaled so the peak is 255 again). Deterministic bytes."""
    density = relative_density(log_density)
    scale = long_side / max(density.shape)
    if scale < 1:
        size = (max(1, round(density.shape[1] * scale)), max(1, round(density.shape[0] * scale)))
        density = cv2.resize(density, size, interpolation=cv2.INTER_AREA)
    level = np.rint(255 * density / max(float(density.max()), 1e-12)).astype(np.uint8)
    ok, buffer = cv2.imencode(".png", level, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {level.shape[1]}x{level.shape[0]} saliency preview")
    return buffer.tobytes()


def relpath_of_output(root: str, output_uri: str, rank: int = 0) -> str:
    """The source's relpath from one of its crops' `output_uri` (to find `ROOT/saliency/<relpath>.npy`):
    the inverse of `crop_uri`, given the crop's `rank` (the metadata column: the `.rank<k>` suffix is
    stripped for that rank only, so the name alone never decides which crop a file is).

    `root` may be given relative to the working directory; `output_uri`s are absolute.
    """
    prefix = join(absolute_uri(root), "crops") + "/"
    if not output_uri.startswith(prefix):
        raise ValueError(f"{output_uri} is not under {prefix}")
    tail = output_uri[len(prefix):].split("/", 1)[1]  # drop the ratio folder
    relpath = tail.rsplit(".", 1)[0]
    if rank:
        suffix = f".rank{rank}"
        if not relpath.endswith(suffix):
            raise ValueError(f"{output_uri} is not the name of a rank-{rank} crop")
        relpath = relpath[:-len(suffix)]
    return relpath


def output_encoding(config: OutputConfig, source_format: str) -> str:
    """The encoder ("jpeg", "png" or "webp") for a source of `source_format` (a Pillow format name)."""
    if config.output_format == "source":
        return _SOURCE_FORMATS.get(source_format, "png")
    return config.output_format


def write_atomically(uri: str, data: bytes) -> int:
    """Write to a temporary name beside `uri`, then rename it into place (replacing an older file:
    `os.rename` locally, copy-then-delete on gs:// and s3://). Returns the number of bytes written."""
    temporary = f"{uri}.{uuid.uuid4().hex}.tmp"
    with FileSystems.create(temporary) as f:
        f.write(data)
    try:
        FileSystems.rename([temporary], [uri])
    except Exception:
        FileSystems.delete([temporary])
        raise
    return len(data)


def write_reduction(source_format: str, crops: list[Crop], max_side: int) -> int:
    """The JPEG scale-down factor (1, 2, 4 or 8) at which to decode a source for its crops: the largest
    that leaves every crop more than its --max_output_side size (so each is still shrunk, never
    enlarged). 1 for other formats and without --max_output_side."""
    if source_format != "JPEG" or not max_side or not crops:
        return 1
    best = 8
    for crop in crops:
        out_w, out_h = output_size(crop.width, crop.height, max_side)
        factor = 1
        for candidate in (2, 4, 8):  # one pixel of slack for rounding the crop's edges at reduced scale
            if crop.width / candidate >= out_w + 1 and crop.height / candidate >= out_h + 1:
                factor = candidate
        best = min(best, factor)
    return best


# Sources up to this size have their crops encoded in parallel: each thread holds one crop (at most
# the source's size), so this bounds the extra memory at threads x 12 MP x 3 bytes.
PARALLEL_MAX_MEGAPIXELS = 12.0

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's pool threads: it makes its own pool when it needs one."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _writer_pool() -> ThreadPoolExecutor:
    """One pool per process, shared by every DoFn instance (threads: `min(4, cpu_count)`)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="gazecrop-write")
        return _pool


class _Source(NamedTuple):
    """The source as the crops are cut from it: pixels at 1/`reduction` scale, and the crops' encoder."""
    pixels: np.ndarray
    reduction: int
    encoding: str


class _Written(NamedTuple):
    """One crop file: where it went, its size in pixels, and how many bytes it took."""
    uri: str
    width: int
    height: int
    size: int


def write_crops(item: CroppedImage, config: OutputConfig, settings: str = "") -> list[dict]:
    """Write one image's crops (and saliency map); return its metadata rows, one per ratio and rank.

    Steps: `decode_source` -> `write_crop_files` (cut, encode, write) -> `metadata_rows`, then
    `write_saliency`. `settings` is the job's `settings_id` (the rows' `config_id` adds the image's focus
    hint to it).
    """
    source = decode_source(item.image, item.crops, config)
    written = write_crop_files(item, source, config)
    # Counters are per bundle and per thread: count here, in the DoFn's thread.
    bytes_written = beam.metrics.Metrics.counter("gazecrop", "bytes_written")
    bytes_written.inc(sum(w.size for w in written))
    rows = metadata_rows(item, written, image_config_id(settings, item.focus), now_utc())
    bytes_written.inc(write_saliency(item.image, config))
    return rows


def decode_source(image: SaliencyImage, crops, config: OutputConfig) -> _Source:
    """The source decoded again for its crops, at the smallest scale they allow (`write_reduction`), and
    checked against the size the decode stage saw (the bomb guard applies again)."""
    header = read_header(image.data, config.max_megapixels)
    check_size(header, config.max_megapixels)
    reduction = write_reduction(header.format, crops, config.max_output_side)
    pixels = decode_pixels(image.data, header, reduction)
    expected = (-(-image.source_width // reduction), -(-image.source_height // reduction))
    if (pixels.shape[1], pixels.shape[0]) != expected:
        raise ValueError(f"the source decoded at 1/{reduction} scale is {pixels.shape[1]}x{pixels.shape[0]}, "
                         f"the header said {image.source_width}x{image.source_height}")
    return _Source(pixels, reduction, output_encoding(config, header.format))


def write_crop_files(item: CroppedImage, source: _Source, config: OutputConfig) -> list[_Written]:
    """Cut, encode and write each crop (in `item.crops` order); in the writer pool for sources of up to
    `PARALLEL_MAX_MEGAPIXELS`, one after another for larger ones (see the module docstring)."""
    image = item.image
    extension = _EXTENSIONS[source.encoding]

    def write_one(crop: Crop) -> _Written:
        ratio = parse_aspect_ratios(crop.aspect_ratio)[0]
        out = cut(source.pixels, crop, config.max_output_side, source.reduction)
        uri = crop_uri(config.root, ratio_dirname(ratio), image.relpath, extension, crop.rank)
        size = write_atomically(uri, encode(out, source.encoding, config.jpeg_quality))
        return _Written(uri, out.shape[1], out.shape[0], size)

    if image.source_width * image.source_height <= PARALLEL_MAX_MEGAPIXELS * 1e6:
        return list(_writer_pool().map(write_one, item.crops))
    return [write_one(crop) for crop in item.crops]


def metadata_rows(item: CroppedImage, written: list[_Written], config_id: str,
                  processed_at: datetime.datetime) -> list[dict]:
    """The metadata rows of one image's written crops (`metadata_row`: exactly `METADATA_SCHEMA`'s columns)."""
    image = item.image
    return [metadata_row({
        "source_uri": image.uri,
        "source_sha256": image.sha256,
        "source_size": len(image.data),
        "source_modified": from_epoch_us(image.modified_us),
        "source_generation": image.generation or None,
        "source_width": image.source_width,
        "source_height": image.source_height,
        "aspect_ratio": crop.aspect_ratio,
        "rank": crop.rank,
        "crop_x": crop.x,
        "crop_y": crop.y,
        "crop_width": crop.width,
        "crop_height": crop.height,
        "focal_x": item.focal_x,
        "focal_y": item.focal_y,
        "saliency_kept": float(crop.saliency_kept),
        "output_uri": file.uri,
        "output_width": file.width,
        "output_height": file.height,
        "model_version": image.model_version,
        "config_id": config_id,
        "processed_at": processed_at,
    }) for crop, file in zip(item.crops, written)]


def write_saliency(image: SaliencyImage, config: OutputConfig) -> int:
    """The image's saliency files that `config` asks for (the .npy map, the .png preview); bytes written."""
    written = 0
    if config.save_saliency:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(image.log_density, dtype=np.float32), allow_pickle=False)
        written += write_atomically(saliency_uri(config.root, image.relpath), buffer.getvalue())
    if config.saliency_preview:
        written += write_atomically(saliency_preview_uri(config.root, image.relpath),
                                    saliency_preview(image.log_density))
    return written


class _WriteCropsFn(beam.DoFn):
    def __init__(self, config: OutputConfig, settings: str):
        self._config = config
        self._settings = settings
        self._cropped = beam.metrics.Metrics.counter("gazecrop", "images_cropped")
        self._crops = beam.metrics.Metrics.counter("gazecrop", "crops_written")
        self._time = beam.metrics.Metrics.distribution("gazecrop", "write_us")

    def process(self, item: CroppedImage):
        start = time.perf_counter()
        rows = write_crops(item, self._config, self._settings)
        self._cropped.inc()
        self._crops.inc(len(rows))
        self._time.update(int((time.perf_counter() - start) * 1e6))
        yield from rows


class WriteCrops(beam.PTransform):
    """Write every image's crops. Returns `(metadata_rows, error_rows)`.

    `settings`: the job's `settings_id(crop_config, config)`, the base of each row's `config_id`.
    """

    def __init__(self, *, config: OutputConfig, settings: str = ""):
        super().__init__()
        self._config = config
        self._settings = settings

    def expand(self, cropped):
        rows, failed = cropped | "Write" >> beam.ParDo(
            _WriteCropsFn(self._config, self._settings)).with_exception_handling()
        return rows, failed | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="write")
