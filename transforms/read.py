"""Read stage: input patterns (globs, gs://, s3://) or a list of URIs to `SourceFile(uri, relpath, data)`.

Outputs are named by each file's path relative to its *input root*:

* for a glob, the directory prefix before its first wildcard (`photos/**/*.jpg` -> `photos/`);
* for `--input_list`, the deepest directory common to all the listed URIs;
* for a pattern without a wildcard (one file), its directory.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from transforms.records import SourceFile, dead_letter_rows

_LOGGER = logging.getLogger(__name__)

_WILDCARDS = "*?["


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


def _keyed_by_path(metadata):
    return metadata.path, metadata


def _first(values):
    return next(iter(values), None)


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


class _ReadFn(beam.DoFn):
    """ReadableFile to SourceFile: reads the whole (compressed) file."""

    def __init__(self, roots: list[str]):
        self._roots = roots
        self._read = beam.metrics.Metrics.counter("gazecrop", "files_read")
        self._time = beam.metrics.Metrics.distribution("gazecrop", "read_us")

    def process(self, readable: fileio.ReadableFile):
        start = time.perf_counter()
        uri = readable.metadata.path
        data = readable.read()
        self._read.inc()
        self._time.update(int((time.perf_counter() - start) * 1e6))
        yield SourceFile(uri=uri, relpath=relative_path(uri, self._roots), data=data)


class ReadImages(beam.PTransform):
    """Match the inputs and read each file. Returns `(sources, error_rows)`."""

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
        sources, read_failed = (
            matched
            | "KeyByPath" >> beam.Map(_keyed_by_path)
            | "Dedupe" >> beam.CombinePerKey(_first)  # a file matched by two patterns is read once
            | "Files" >> beam.Values()
            | "ReadMatches" >> fileio.ReadMatches(skip_directories=True)
            | "Read" >> beam.ParDo(_ReadFn(self._roots)).with_exception_handling())
        errors = (
            (match_failed, read_failed)
            | "FailedReads" >> beam.Flatten()
            | "ErrorRows" >> beam.FlatMap(dead_letter_rows, stage="read"))
        return sources, errors
