"""Read stage: input patterns (globs, gs://, s3://) or a list of URIs to `SourceFile(uri, relpath, data)`.

Outputs are named by each file's path relative to its *input root*:

* for a glob, the directory prefix before its first wildcard (`photos/**/*.jpg` -> `photos/`);
* for `--input_list`, the deepest directory common to all the listed URIs;
* for a pattern without a wildcard (one file), its directory.

That relative path is made safe to join to the output root by `transforms.paths` (no `..`, no absolute
path, escapes, length caps), and the files whose output names would collide (the same relpath under two
roots, names equal but for Unicode normalisation or case) get a distinct suffix: the files are grouped
by `collision_key` before they are read, which also reads a file matched by two patterns once.

Limits before work: `--max_input_bytes` is checked from the size the match reported, before a byte is
read, and again while reading (at most limit + 1 bytes are read, in case the file grew). Files are read
as stored: never decompressed because of their name (Beam's `ReadMatches` would gunzip a `.gz`, a way
round the byte limit).
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.paths import collision_key, output_relpaths, safe_relpath
from transforms.records import SourceFile, dead_letter_rows, seconds_to_epoch_us

_LOGGER = logging.getLogger(__name__)

_WILDCARDS = "*?["

# Default of --max_input_bytes: larger files are refused before they are read (0 disables).
DEFAULT_MAX_INPUT_BYTES = 200_000_000


class InputTooLargeError(ValueError):
    """The file is larger than --max_input_bytes."""


class MatchedFile(NamedTuple):
    """A matched input file, its output relpath (`transforms.paths`), and the size, modification time
    and object generation the match (or a storage notification) reported."""
    uri: str
    relpath: str
    size_in_bytes: int
    modified_us: int = 0  # last modification, microseconds since the epoch (0: unknown)
    generation: str = ""  # gs:// object generation (`transforms.generations`); "": none known


def absolute_uri(uri: str) -> str:
    """A local path made absolute (so source_uri names the file wherever the job ran from); URIs with a
    scheme (gs://, s3://) unchanged."""
    return uri if "://" in uri else os.path.abspath(uri)


def has_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in _WILDCARDS)


def pattern_root(pattern: str) -> str:
    """The directory prefix of `pattern` before its first wildcard, ending with '/'."""
    first = min((pattern.index(c) for c in _WILDCARDS if c in pattern), default=len(pattern))
    head = pattern[:first]
    return head[:head.rfind("/") + 1] if "/" in head else ""


def common_root(uris: list[str]) -> str:
    """The deepest directory (ending with '/') that contains every URI of the list."""
    if not uris:
        return ""
    directories = [u[:u.rfind("/") + 1] for u in uris]
    prefix = posixpath.commonprefix(directories)
    return prefix[:prefix.rfind("/") + 1]


def relative_path(uri: str, roots: list[str]) -> str:
    """`uri` relative to the longest root that contains it (its own file name if none does)."""
    containing = [r for r in roots if r and uri.startswith(r)]
    if containing:
        return uri[len(max(containing, key=len)):]
    return uri.rsplit("/", 1)[-1]


def read_input_list(path: str) -> list[str]:
    """URIs of an --input_list file: one per line, blank lines and '#' comments skipped."""
    with FileSystems.open(path) as f:
        lines = f.read().decode("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def input_roots(patterns: list[str], listed: list[str]) -> list[str]:
    """The input roots of the patterns and of the listed URIs (see the module docstring)."""
    roots = [pattern_root(p) for p in patterns]
    if listed:
        roots.append(common_root(listed))
    return roots


def _keyed_by_output_name(metadata, roots: list[str]):
    """(collision key of the file's output name, (path, size, modified)): files whose outputs would be
    one file (on a case-insensitive store, too) meet in one group."""
    relpath = relative_path(metadata.path, roots)
    return (collision_key(safe_relpath(relpath)),
            (metadata.path, metadata.size_in_bytes, seconds_to_epoch_us(metadata.last_updated_in_seconds)))


def _named_files(keyed, roots: list[str]):
    """The files of one collision group, each once (a file matched by two patterns is read once), with
    their output relpaths."""
    _, files = keyed
    listed = {path: (size, modified) for path, size, modified in sorted(files)}
    names = output_relpaths((path, relative_path(path, roots)) for path in sorted(listed))
    beam.metrics.Metrics.counter("gazecrop", "files_matched").inc(len(listed))
    for path in sorted(listed):
        size, modified = listed[path]
        yield MatchedFile(uri=path, relpath=names[path], size_in_bytes=size, modified_us=modified)


class _MatchFn(beam.DoFn):
    """Pattern or URI to the FileMetadata of every file it matches.

    A URI without a wildcard that matches nothing is an input that does not exist: it raises, so it
    becomes an error row. A glob that matches nothing is logged and counted (it names no input file).
    """

    def __init__(self):
        self._empty = beam.metrics.Metrics.counter("gazecrop", "patterns_matching_nothing")

    def process(self, pattern: str):
        metadata_list = FileSystems.match([pattern])[0].metadata_list
        files = [m for m in metadata_list if not m.path.endswith("/")]
        if not files:
            if not has_wildcard(pattern):
                raise FileNotFoundError(f"no such file: {pattern}")
            _LOGGER.warning("Input pattern %s matches no file", pattern)
            self._empty.inc()
        yield from files


def read_bytes(uri: str, size_in_bytes: int | None, max_input_bytes: int) -> bytes:
    """The file's bytes as stored; InputTooLargeError over `max_input_bytes` (0: no limit), from the
    matched size before reading, else after reading at most `max_input_bytes + 1` bytes."""
    if max_input_bytes and size_in_bytes is not None and size_in_bytes > max_input_bytes:
        raise InputTooLargeError(f"file is {size_in_bytes} bytes, over --max_input_bytes={max_input_bytes}")
    with FileSystems.open(uri, mime_type="application/octet-stream",
                          compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = f.read(max_input_bytes + 1) if max_input_bytes else f.read()
    if max_input_bytes and len(data) > max_input_bytes:
        raise InputTooLargeError(f"file is over --max_input_bytes={max_input_bytes} bytes (it grew after it "
                                 f"was matched at {size_in_bytes} bytes)")
    return data


class _ReadFn(beam.DoFn):
    """MatchedFile to SourceFile: reads the whole (compressed) file, within --max_input_bytes."""

    def __init__(self, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES):
        self._max_input_bytes = max_input_bytes
        self._read = beam.metrics.Metrics.counter("gazecrop", "files_read")
        self._bytes = beam.metrics.Metrics.counter("gazecrop", "bytes_read")
        self._time = beam.metrics.Metrics.distribution("gazecrop", "read_us")

    def process(self, matched: MatchedFile):
        start = time.perf_counter()
        data = read_bytes(matched.uri, matched.size_in_bytes, self._max_input_bytes)
        self._read.inc()
        self._bytes.inc(len(data))
        self._time.update(int((time.perf_counter() - start) * 1e6))
        yield SourceFile(uri=matched.uri, relpath=matched.relpath, data=data, modified_us=matched.modified_us,
                         generation=matched.generation)


class MatchImages(beam.PTransform):
    """Match the input patterns and listed URIs (batch). Returns `(matched_files, error_rows)`: every
    file once, named (`MatchedFile.relpath`) and sized, nothing read yet."""

    def __init__(self, *, patterns: list[str], listed_uris: list[str] = ()):
        super().__init__()
        patterns = [absolute_uri(p) for p in patterns]
        listed_uris = [absolute_uri(u) for u in listed_uris]
        self._inputs = patterns + listed_uris
        self._roots = input_roots(patterns, listed_uris)

    def expand(self, pbegin):
        matched, match_failed = (
            pbegin
            | "Inputs" >> beam.Create(self._inputs)
            | "Match" >> beam.ParDo(_MatchFn()).with_exception_handling())
        named = (
            matched
            | "KeyByOutputName" >> beam.Map(_keyed_by_output_name, self._roots)
            | "GroupByOutputName" >> beam.GroupByKey()
            | "NameOutputs" >> beam.FlatMap(_named_files, self._roots))
        return named, match_failed | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="read")


class ReadMatchedFiles(beam.PTransform):
    """Read each `MatchedFile` whole (batch or streaming). Returns `(sources, error_rows)`.

    `max_input_bytes`: larger files become an error row at stage `read`, unread (0: no limit).
    """

    def __init__(self, *, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES):
        super().__init__()
        self._max_input_bytes = max_input_bytes

    def expand(self, matched):
        sources, failed = matched | "Read" >> beam.ParDo(_ReadFn(self._max_input_bytes)).with_exception_handling()
        return sources, failed | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="read")


class ReadImages(beam.PTransform):
    """Match the inputs and read each file (`MatchImages` then `ReadMatchedFiles`). Returns
    `(sources, error_rows)`."""

    def __init__(self, *, patterns: list[str], listed_uris: list[str] = (),
                 max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES):
        super().__init__()
        self._match = MatchImages(patterns=patterns, listed_uris=listed_uris)
        self._read = ReadMatchedFiles(max_input_bytes=max_input_bytes)

    def expand(self, pbegin):
        matched, match_errors = pbegin | "Match" >> self._match
        sources, read_errors = matched | "Read" >> self._read
        return sources, (match_errors, read_errors) | "ReadErrors" >> beam.Flatten()
