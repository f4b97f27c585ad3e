"""The elements that travel between stages, and the error rows every stage's failures become (no Beam:
the stages' dead letters become rows in `gazecrop.transforms.dead_letters`).

Each record keeps `uri` so that a failure at any stage can name its source, and `data` (the compressed
source bytes) so that the writer can cut the crops from the full-resolution source without holding
pixels between stages.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np


class SourceFile(NamedTuple):
    """Read stage output: one matched file and its bytes."""
    uri: str
    relpath: str  # path relative to its input root; names the outputs
    data: bytes
    modified_us: int = 0  # last modification as listed, microseconds since the epoch (0: unknown)
    generation: str = ""  # gs:// object generation as listed (`gazecrop.transforms.generations`); "": none known


class DecodedImage(NamedTuple):
    """Decode stage output: model input pixels plus what the later stages need about the source."""
    uri: str
    relpath: str
    data: bytes
    sha256: str
    source_width: int  # after EXIF orientation
    source_height: int
    pixels: np.ndarray  # uint8 RGB (h, w, 3) at the model's input size
    modified_us: int = 0
    generation: str = ""


class SaliencyImage(NamedTuple):
    """Inference stage output: the source and its predicted log-density at model resolution."""
    uri: str
    relpath: str
    data: bytes
    sha256: str
    source_width: int
    source_height: int
    log_density: np.ndarray  # float32 (h, w), logsumexp == 0
    model_version: str
    modified_us: int = 0
    generation: str = ""
    # The faces the model's face prior found, (K, 5) float32 (x0, y0, x1, y1, score) normalised to the source;
    # None for a model without one. The crop search keeps their heads whole (`gazecrop.search`, face boxes).
    faces: np.ndarray | None = None


class CroppedImage(NamedTuple):
    """Crop stage output: the source, its saliency, its crops (per ratio, ranks 0..) and focal point."""
    image: SaliencyImage
    crops: tuple  # of gazecrop.search.Crop, in --aspect_ratios order, by rank within a ratio (0 = best)
    focal_x: int
    focal_y: int
    focus: Any = None  # the --focus hint the crops contain (gazecrop.search.Focus), if any


def group_by_shape_of(arrays: Sequence[np.ndarray]) -> dict[tuple, list[int]]:
    """Indices of `arrays` grouped by shape, in first-seen order: the model and the crop search take one
    shape per call (`gazecrop.model.predict.predict_log_densities`, `gazecrop.search.crop_images`)."""
    groups: dict[tuple, list[int]] = {}
    for i, array in enumerate(arrays):
        groups.setdefault(array.shape, []).append(i)
    return groups


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def from_epoch_us(us: int) -> datetime.datetime | None:
    """Microseconds since the epoch as a UTC datetime; None for 0 (unknown)."""
    if not us:
        return None
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(microseconds=us)


def seconds_to_epoch_us(seconds: float | None) -> int:
    """A listing's modification time (seconds since the epoch, float) as whole microseconds; 0: unknown."""
    return round(seconds * 1_000_000) if seconds else 0


def to_epoch_us(timestamp: datetime.datetime | None) -> int:
    """A table's timestamp as microseconds since the epoch; 0 for None (unknown): `from_epoch_us`'s inverse."""
    if timestamp is None:
        return 0
    return round(timestamp.timestamp() * 1_000_000)


def source_uri_of(element: Any) -> str:
    """The source URI of any stage's input element (record, ReadableFile, FileMetadata or pattern)."""
    if isinstance(element, CroppedImage):
        return element.image.uri
    uri = getattr(element, "uri", None)
    if isinstance(uri, str):
        return uri
    metadata = getattr(element, "metadata", None)  # fileio.ReadableFile
    if metadata is not None:
        return metadata.path
    path = getattr(element, "path", None)  # FileMetadata
    if isinstance(path, str):
        return path
    return str(element)


def error_row(source_uri: str, stage: str, error_type: str, message: str,
              processed_at: datetime.datetime | None = None) -> dict:
    """One row of the errors table."""
    return {
        "source_uri": source_uri,
        "stage": stage,
        "error_type": error_type,
        "message": message[:2000],
        "processed_at": processed_at or now_utc(),
    }


def dead_letter_message(error_type: str, exc_repr: str, traceback_lines) -> str:
    """The exception's own message: the traceback's last line without its `Type: ` prefix."""
    if traceback_lines:
        last = "".join(traceback_lines).rstrip().splitlines()[-1]
        prefix = error_type + ":"
        if prefix in last:
            return last.split(prefix, 1)[1].strip()
        if last.strip() == error_type:
            return error_type
    return str(exc_repr)
