"""Read stage: input patterns (globs, gs://, s3://) or a list of URIs to `SourceFile(uri, relpath, data)`.

Outputs are named by each file's path relative to its *input root*:

* for a glob, the directory prefix before its first wildcard (`photos/**/*.jpg` -> `photos/`);
* for `--input_list`, the deepest directory common to all the listed URIs;
* for a pattern without a wildcard (one file), its directory.

That relative path is made safe to join to the output root, and distinct for every source, by
`gazecrop.paths.output_relpath` (escapes, length caps, and a short hash of the source URI): a name never
depends on what else a run matched. A file matched by two patterns is read once.

**Patterns and literal names.** Wildcards (`*`, `**`, `?`, `[...]`, see `glob_regex`) are matched here,
by gazecrop, against the listing of the pattern's root (Beam's `FileSystems.match` only lists): a
matched file is passed on by its exact name, whatever characters it holds (a backslash, `[`, `?`, `*`
are legal in file and object names). An `--input` without wildcards and every `--input_list` entry are
literal names, never patterns. What the run itself writes under the output root (`gazecrop.paths.ROOT_OUTPUTS`)
is never an input. Only regular files are read: a FIFO, device or folder that a pattern matches becomes
an error row at stage `read` (`NotARegularFileError`), never a read that blocks.

Limits before work: `--max_input_bytes` is checked from the size the match reported, before a byte is
read, and again while reading (at most limit + 1 bytes are read, in case the file grew). Files are read
as stored: never decompressed because of their name (Beam's `ReadMatches` would gunzip a `.gz`, a way
round the byte limit).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import stat
import time
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from gazecrop.paths import is_run_output, output_relpath
from gazecrop.records import SourceFile, seconds_to_epoch_us
from gazecrop.transforms.dead_letters import dead_letter_rows

_LOGGER = logging.getLogger(__name__)

_WILDCARDS = "*?["

# Default of --max_input_bytes: larger files are refused before they are read (0 disables).
DEFAULT_MAX_INPUT_BYTES = 200_000_000


class InputTooLargeError(ValueError):
    """The file is larger than --max_input_bytes."""


class NotARegularFileError(OSError):
    """The input is a FIFO, a device, a socket or a folder: never opened (a FIFO's read would block)."""


class MatchedFile(NamedTuple):
    """A matched input file, its output relpath (`gazecrop.paths`), and the size, modification time
    and object generation the match (or a storage notification) reported."""
    uri: str
    relpath: str
    size_in_bytes: int
    modified_us: int = 0  # last modification, microseconds since the epoch (0: unknown)
    generation: str = ""  # gs:// object generation (`gazecrop.transforms.generations`); "": none known


def absolute_uri(uri: str) -> str:
    """A local path made absolute (so source_uri names the file wherever the job ran from); URIs with a
    scheme (gs://, s3://) unchanged."""
    return uri if "://" in uri else os.path.abspath(uri)


def join(root: str, *parts: str) -> str:
    """`root/part/...` for any filesystem (FileSystems.join keeps the scheme)."""
    return FileSystems.join(root.rstrip("/"), *parts)


def has_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in _WILDCARDS)


def pattern_root(pattern: str) -> str:
    """The directory prefix of `pattern` before its first wildcard, ending with '/'."""
    first = min((pattern.index(c) for c in _WILDCARDS if c in pattern), default=len(pattern))
    head = pattern[:first]
    return head[:head.rfind("/") + 1] if "/" in head else ""


def _class_end(pattern: str, start: int) -> int:
    """Index of the `]` closing the character class opened at `pattern[start] == '['`, or -1."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "!":
        i += 1
    if i < len(pattern) and pattern[i] == "]":  # a `]` first in the class is a character of it
        i += 1
    return pattern.find("]", i)


def glob_regex(pattern: str) -> re.Pattern:
    """`pattern` as a regular expression over whole URIs. `**/` is any number of folders (none too),
    `**` any characters, `*` any characters but `/`, `?` one character but `/`, `[...]` one character of
    the class (`[!...]`: not of it); every other character stands for itself, `\\` too (it is a character
    of file and object names, not an escape). A literal `*`, `?` or `[` is written `[*]`, `[?]`, `[[]`."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := _class_end(pattern, i)) > 0:
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            body = "".join(ch if ch == "-" else re.escape(ch) for ch in (body[1:] if negate else body))
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def match_pattern(pattern: str) -> list:
    """The FileMetadata of every file `pattern` matches (`glob_regex`): Beam's FileSystems lists the
    pattern's root (local, gs://, s3://), gazecrop matches the names, so a name is never read as a
    pattern. Folder markers (names ending with `/`) are left out."""
    regex = glob_regex(pattern)
    listed = FileSystems.match([pattern_root(pattern) + "**"])[0].metadata_list
    return [m for m in listed if not m.path.endswith("/") and regex.fullmatch(m.path)]


def match_literal(uri: str):
    """The FileMetadata of the file named exactly `uri`; FileNotFoundError if there is none."""
    if not FileSystems.exists(uri):
        raise FileNotFoundError(f"no such file: {uri}")
    return FileSystems.get_filesystem(uri).metadata(uri)


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


class InputSpec(NamedTuple):
    """One `--input` or `--input_list` entry: a pattern, or (`literal`) the exact name of one file."""
    uri: str
    literal: bool


def input_specs(patterns: list[str], listed: list[str]) -> list[InputSpec]:
    """`--input` values (literal when they hold no wildcard) and `--input_list` entries (always
    literal), made absolute."""
    return ([InputSpec(absolute_uri(p), literal=not has_wildcard(p)) for p in patterns]
            + [InputSpec(absolute_uri(u), literal=True) for u in listed])


def _named_file(keyed, roots: list[str]) -> MatchedFile:
    """The one MatchedFile of a URI (a file matched by two patterns is read once), named by
    `output_relpath`."""
    uri, listings = keyed
    _, size, modified = min(listings)
    beam.metrics.Metrics.counter("gazecrop", "files_matched").inc()
    return MatchedFile(uri=uri, relpath=output_relpath(uri, relative_path(uri, roots)), size_in_bytes=size,
                       modified_us=modified)


def files_of(spec: InputSpec, output_root: str) -> list:
    """The FileMetadata of the file a literal `spec` names (FileNotFoundError if none; ValueError if it is
    one of the run's own outputs), or of every file a pattern matches, less the run's own outputs under
    `output_root` (`gazecrop.paths.is_run_output`)."""
    if spec.literal:
        if is_run_output(spec.uri, output_root):
            raise ValueError(f"{spec.uri} is an output of this run (under --output {output_root}), not an input")
        return [match_literal(spec.uri)]
    return [m for m in match_pattern(spec.uri) if not is_run_output(m.path, output_root)]


def names_a_file(spec: InputSpec, output_root: str, *, peek: int = 16) -> bool:
    """Whether `spec` names at least one input file (`files_of`), listing as little as possible: most
    patterns show one among the first `peek` entries of Beam's own match; else the whole listing."""
    if not spec.literal:
        regex = glob_regex(spec.uri)
        first = FileSystems.match([spec.uri], limits=[peek])[0].metadata_list
        if any(not m.path.endswith("/") and regex.fullmatch(m.path) and not is_run_output(m.path, output_root)
               for m in first):
            return True
    try:
        return bool(files_of(spec, output_root))
    except (FileNotFoundError, ValueError):
        return False


class _MatchFn(beam.DoFn):
    """InputSpec to `(uri, (uri, size, modified µs))` for every file it names or matches (`files_of`).

    A literal name that names no file is an input that does not exist: it raises, so it becomes an error
    row. A pattern that matches nothing is logged and counted (it names no input file).
    """

    def __init__(self, output_root: str):
        self._output_root = output_root
        self._empty = beam.metrics.Metrics.counter("gazecrop", "patterns_matching_nothing")

    def process(self, spec: InputSpec):
        files = files_of(spec, self._output_root)
        if not files:
            _LOGGER.warning("Input pattern %s matches no file", spec.uri)
            self._empty.inc()
        for m in files:
            yield m.path, (m.path, m.size_in_bytes, seconds_to_epoch_us(m.last_updated_in_seconds))


def check_regular_file(uri: str) -> None:
    """NotARegularFileError if the local `uri` is a FIFO, device, socket or folder (object stores hold
    only objects: nothing to check)."""
    if "://" in uri:
        return
    mode = os.stat(uri).st_mode
    if stat.S_ISREG(mode):
        return
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    raise NotARegularFileError(f"{uri} is {kind}, not a regular file: not read")


def read_bytes(uri: str, size_in_bytes: int | None, max_input_bytes: int) -> bytes:
    """The file's bytes as stored; InputTooLargeError over `max_input_bytes` (0: no limit), from the
    matched size before reading, else after reading at most `max_input_bytes + 1` bytes;
    NotARegularFileError for a FIFO, device or folder (`check_regular_file`)."""
    if max_input_bytes and size_in_bytes is not None and size_in_bytes > max_input_bytes:
        raise InputTooLargeError(f"file is {size_in_bytes} bytes, over --max_input_bytes={max_input_bytes}")
    check_regular_file(uri)
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
    file once, named (`MatchedFile.relpath`) and sized, nothing read yet; nothing that the run writes
    under `output_root` (absolute)."""

    def __init__(self, *, patterns: list[str], listed_uris: list[str] = (), output_root: str):
        super().__init__()
        self._inputs = input_specs(list(patterns), list(listed_uris))
        self._roots = input_roots([absolute_uri(p) for p in patterns], [absolute_uri(u) for u in listed_uris])
        self._output_root = output_root

    def expand(self, pbegin):
        matched, match_failed = (
            pbegin
            | "Inputs" >> beam.Create(self._inputs)
            | "Match" >> beam.ParDo(_MatchFn(self._output_root)).with_exception_handling())
        named = (
            matched
            | "GroupByUri" >> beam.GroupByKey()
            | "Name" >> beam.Map(_named_file, self._roots))
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

    def __init__(self, *, patterns: list[str], listed_uris: list[str] = (), output_root: str,
                 max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES):
        super().__init__()
        self._match = MatchImages(patterns=patterns, listed_uris=listed_uris, output_root=output_root)
        self._read = ReadMatchedFiles(max_input_bytes=max_input_bytes)

    def expand(self, pbegin):
        matched, match_errors = pbegin | "Match" >> self._match
        sources, read_errors = matched | "Read" >> self._read
        return sources, (match_errors, read_errors) | "ReadErrors" >> beam.Flatten()
