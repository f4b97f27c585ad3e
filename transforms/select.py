"""Crop stage: saliency maps to ranked crops per aspect ratio, vectorised over a batch and all ratios.

The search itself is `gazecrop.search.crop_images` (`choose_crops` once per map shape, summed-area tables
over the batch; `gazecrop.crop` runs the same function); this module only batches the images, looks up each
image's focus (the --focus table), and keeps each image's crops (every ratio, ranks 0 .. --candidates - 1)
and its focal point.

The focus table (`gazecrop.search.read_focus_rows`) is read once when the job is built and resolved to a
`FocusTable` keyed by source URI (`resolve_focus_table`); it travels with the job like the --input_list
URIs. A row names an image by its source URI or by its path relative to an input root; a relative path
is joined to the input roots then, so an image is looked up by its URI alone (`focus_key`), never by its
output name (which may carry a disambiguator). Rows that name no input file are logged and counted by
`LogUnmatchedFocusRows`; they change nothing else.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam

from gazecrop.search import CropConfig, Focus, crop_images
from gazecrop.transforms.focus import FocusRow, FocusTableError, refuse_duplicate_keys
from gazecrop.transforms.read import absolute_uri
from gazecrop.records import CroppedImage, SaliencyImage, SourceFile
from gazecrop.transforms.dead_letters import dead_letter_rows

_LOGGER = logging.getLogger(__name__)


def source_key(uri: str) -> str:
    """How a source URI is written as a focus-table key: Unicode NFC (a name typed on a Mac is NFD)."""
    return unicodedata.normalize("NFC", uri)


@dataclasses.dataclass(frozen=True)
class FocusTable(Mapping):
    """The --focus table of a job: `{source URI (NFC): Focus}`, and which URIs each row names (for the
    log of rows that name no input file)."""
    hints: Mapping[str, Focus] = dataclasses.field(default_factory=dict)
    rows: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # key as written -> URIs

    def __getitem__(self, uri: str) -> Focus:
        return self.hints[uri]

    def __iter__(self) -> Iterator[str]:
        return iter(self.hints)

    def __len__(self) -> int:
        return len(self.hints)


def is_source_uri(key: str) -> bool:
    """A key with a scheme (gs://, s3://) or an absolute local path names a source by its URI; any other
    key is a path relative to an input root."""
    return "://" in key or key.startswith("/")


def candidate_uris(key: str, roots: Sequence[str]) -> list[str]:
    """The source URIs a focus-table key can name: itself if it is a URI, else `root + key` for each
    distinct input root (local paths normalised as the read stage writes them), NFC."""
    if is_source_uri(key):
        return [source_key(absolute_uri(key))]
    joined = [absolute_uri(root + key) for root in dict.fromkeys(roots) if root]
    return list(dict.fromkeys(source_key(uri) for uri in joined))


def resolve_focus_table(rows: Sequence[FocusRow], roots: Sequence[str], *,
                        exists: Callable[[str], bool] | None = None) -> FocusTable:
    """The rows of a focus table keyed by the source URIs they name, once, when the job is built.

    `roots`: the job's input roots (`gazecrop.transforms.read.input_roots`, absolute). A relative key names
    `root + key` under each root; where there are several roots and it names an existing file under two
    of them, the row is ambiguous and refused (write the source URI instead). Raises `FocusTableError`
    naming both rows when two rows name one source URI (`a.jpg` and `/in/a.jpg`, or NFC twins).
    """
    if exists is None:
        from apache_beam.io.filesystems import FileSystems
        exists = FileSystems.exists
    named: dict[str, tuple[str, ...]] = {}
    for row in rows:
        uris = candidate_uris(row.key, roots)
        if len(uris) > 1:
            existing = [uri for uri in uris if exists(uri)]
            if len(existing) > 1:
                raise FocusTableError(f"focus table {row.where}: {row.key!r} names a file under "
                                      f"{len(existing)} input roots ({', '.join(existing)}); write the source "
                                      f"URI of the one it means")
            uris = existing or uris
        named[row.key] = tuple(uris)
    by_key = {row.key: row for row in rows}
    refuse_duplicate_keys((uri, by_key[key]) for key, uris in named.items() for uri in uris)
    hints = {uri: by_key[key].focus for key, uris in named.items() for uri in uris}
    return FocusTable(hints=hints, rows=named)


def focus_key(focus: Mapping[str, Focus], uri: str) -> str | None:
    """The focus-table key naming the image with source `uri` (its NFC form), or None."""
    key = source_key(uri)
    return key if key in focus else None


def select_crops(images: Sequence[SaliencyImage], config: CropConfig,
                 focus: Mapping[str, Focus] | None = None) -> list[CroppedImage]:
    """Ranked crops per ratio and focal point of every image (`gazecrop.search.crop_images`: one
    `choose_crops` call per map shape).

    `focus` ({source URI: Focus}, see `focus_key`) gives the region an image's crops must all contain.
    """
    focus = focus or {}
    keys = [focus_key(focus, image.uri) for image in images]
    hints = [None if key is None else focus[key] for key in keys]
    chosen = crop_images([image.log_density for image in images],
                         [(image.source_width, image.source_height) for image in images], config, focus=hints,
                         faces=[image.faces for image in images])
    return [CroppedImage(image=image, crops=found.crops, focal_x=found.focal_x, focal_y=found.focal_y, focus=hint)
            for image, hint, found in zip(images, hints, chosen)]


class _SelectCropsFn(beam.DoFn):
    def __init__(self, config: CropConfig, focus: Mapping[str, Focus]):
        self._config = config
        self._focus = focus
        self._time = beam.metrics.Metrics.distribution("gazecrop", "crop_us")
        self._focused = beam.metrics.Metrics.counter("gazecrop", "images_with_focus")

    def process(self, batch: list[SaliencyImage]):
        start = time.perf_counter()
        results = select_crops(batch, self._config, self._focus)
        self._time.update(int((time.perf_counter() - start) * 1e6))
        if self._focus:
            self._focused.inc(sum(focus_key(self._focus, i.uri) is not None for i in batch))
        yield from results


class SelectCrops(beam.PTransform):
    """Crops for every image. Returns `(cropped_images, error_rows)`.

    Args:
      config: the crop search (ratios, --candidates, --min_scale, ...).
      focus: the --focus table, `{source URI: Focus}` (see `focus_key`); empty = the model alone decides.
      max_batch_size: most images per `choose_crops` call.
    """

    def __init__(self, *, config: CropConfig, focus: Mapping[str, Focus] | None = None,
                 max_batch_size: int = 64):
        super().__init__()
        self._config = config
        self._focus = focus or {}
        self._max_batch_size = max_batch_size

    def expand(self, images):
        cropped, failed = (
            images
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch_size)
            | "Choose" >> beam.ParDo(_SelectCropsFn(self._config, self._focus)).with_exception_handling())
        return cropped, failed | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="crop")


# ----------------------------------------------------------------------------------------------
# Focus rows that name no input file
# ----------------------------------------------------------------------------------------------

def focus_keys_found(source: SourceFile, *, keys: frozenset) -> list[str]:
    """The focus-table key that names `source` (its NFC source URI), if any."""
    key = source_key(source.uri)
    return [key] if key in keys else []


def unmatched_focus_keys(found: Iterable[str], *, rows: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The table's rows (keys as written) none of whose URIs an input file matched, sorted."""
    found = set(found)
    return sorted(key for key, uris in rows.items() if found.isdisjoint(uris))


class _LogUnmatchedFocusRowFn(beam.DoFn):
    def __init__(self):
        self._unmatched = beam.metrics.Metrics.counter("gazecrop", "focus_rows_unmatched")

    def process(self, key: str):
        _LOGGER.warning("--focus row %r names no input file (neither a source URI nor a path relative "
                        "to an input root); ignored", key)
        self._unmatched.inc()
        yield key


class LogUnmatchedFocusRows(beam.PTransform):
    """Log (and count as `focus_rows_unmatched`) each --focus row that names no input file; such a row
    is otherwise ignored. Applied to the read stage's `SourceFile`s: a row naming a file that exists
    but fails later is matched (the file has its error row). Returns the unmatched keys.

    `focus`: a `FocusTable` (its rows are logged by their keys as written), or any `{URI: Focus}`."""

    def __init__(self, *, focus: Mapping[str, Focus]):
        super().__init__()
        self._keys = frozenset(focus)
        self._rows = dict(getattr(focus, "rows", None) or {uri: (uri,) for uri in focus})

    def expand(self, sources):
        return (
            sources
            | "KeysFound" >> beam.FlatMap(focus_keys_found, keys=self._keys)
            | "AllKeysFound" >> beam.combiners.ToSet()
            | "Unmatched" >> beam.FlatMap(unmatched_focus_keys, rows=self._rows)
            | "Log" >> beam.ParDo(_LogUnmatchedFocusRowFn()))
