"""Output names from input names: the one rule that keeps every output under ROOT and every output distinct.

Every output file is named `ROOT/<folder>/<relpath><suffix>`, where `<relpath>` is the source's path
relative to its input root and `<suffix>` is what the writer appends (`.<ext>`, `.rank<k>.<ext>`, `.npy`,
and `.<32 hex>.tmp` for the temporary file). Input names come from users and object stores: a gs:// or
s3:// object name may contain `..`, `//`, a leading `/`, newlines, `%`, glob characters, anything. The
output name is made from it here, and only here:

`safe_relpath(relpath)` returns a relative, `/`-separated path that
  * stays under the folder it is joined to: no segment is empty, `.` or `..`; it never starts with `/`;
    it holds no `\\` (a separator on Windows);
  * is readable: ordinary names (letters of any script, digits, spaces, `-_.,()'&+=@!~#`, ...) pass
    unchanged, after Unicode NFC normalisation;
  * is distinct for distinct NFC inputs (the rule is injective): characters it must change are
    percent-escaped as the `%XX` of their UTF-8 bytes, and `%` itself becomes `%25`, so an escape in the
    output is never confused with the same text in the input. Escaped are: `%`; `\\`; the glob
    characters `* ? [ ]` (Beam's `FileSystems.match` and `.delete` expand them, on gs:// as locally);
    control characters (C0, DEL, C1), U+2028/U+2029 line separators and bidirectional-override
    controls (they make a name display as another); unpaired surrogates (undecodable bytes of a local
    name); a segment's leading `-` (never read as a command-line option); the segments `.` (`%2E`) and
    `..` (`%2E%2E`); an empty segment (`a//b`, a leading `/`) becomes `%2F`;
  * never collides with a writer's suffix: a last segment ending in `.rank<k>` gets that dot escaped
    (so source `a.rank1`'s crop is not the rank-1 crop of source `a`), and so does a directory segment
    ending in an output extension (`.jpg`, `.png`, `.webp`, `.npy`: so directory `a.jpg/` is not the
    crop file of source `a`);
  * is short enough: a segment longer than `MAX_SEGMENT_BYTES` UTF-8 bytes keeps its start and its
    extension around `%~<16 hex>`, a SHA-256 prefix of the whole segment (distinct segments stay
    distinct); a relpath longer than `MAX_RELPATH_BYTES` keeps its file name and replaces its folders
    by one folder `%~<16 hex>` (gs:// object names are at most 1,024 bytes; file names 255).

`%~` never comes from escaping (an input `%` is always `%25`), so a shortened name cannot equal another
input's name.

`output_relpath(source_uri, relpath)` is the name a source's outputs get: `safe_relpath(relpath)` with
`%=<16 hex>` (a SHA-256 prefix of the source URI) after its file name, e.g. `shoes/1234.jpg%=3fa9c1d27b06e4a5`.
The name is a function of the source alone, never of what else a run matched, so

  * two sources never share an output name, in one run or across runs: the same relpath under two
    input roots (`xa/a.png`, `xb/a.png`), names equal but for Unicode normalisation (NFC and NFD `é`),
    and names that differ only in case (they would be one file on a case-insensitive store: a macOS or
    Windows folder, some mounted buckets; the hash part makes them differ after case folding too);
  * a rerun over the same source, whatever else it matches, writes the same names (what `--incremental`
    relies on);
  * the readable part still says which file it is (case and folders kept).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Longest output path segment, in UTF-8 bytes. File systems allow 255; the writer appends up to
# `.rank<k>.webp` and, for the temporary file, `.<32 hex>.tmp` (37 bytes): 180 leaves room for all.
MAX_SEGMENT_BYTES = 180
# Longest relpath, in UTF-8 bytes: gs:// object names are at most 1,024 bytes, and ROOT, `crops/<ratio>/`
# and the suffixes need the rest.
MAX_RELPATH_BYTES = 640
HASH_HEX = 16

_ALWAYS_ESCAPED = frozenset("%\\*?[]")
# Bidirectional formatting controls: they reorder how a name is displayed ("gpj.exe" shown as "exe.jpg").
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_RANK_SUFFIX = re.compile(r"\.rank[0-9]+$", re.IGNORECASE)
_OUTPUT_EXTENSION = re.compile(r"\.(jpg|png|webp|npy)$", re.IGNORECASE)
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def _escaped_char(c: str) -> bool:
    code = ord(c)
    return (c in _ALWAYS_ESCAPED or code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029)
            or 0xD800 <= code <= 0xDFFF or c in _BIDI_CONTROLS)


def _percent(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode("utf-8", "surrogatepass"))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX]


def _escape_dot_before(segment: str, pattern: re.Pattern) -> str:
    match = pattern.search(segment)
    if not match:
        return segment
    return segment[:match.start()] + "%2E" + segment[match.start() + 1:]


def _shorten(segment: str) -> str:
    """`segment` (already escaped) cut to MAX_SEGMENT_BYTES: its start, `%~<hash>`, its extension."""
    if len(segment.encode("utf-8")) <= MAX_SEGMENT_BYTES:
        return segment
    match = _EXTENSION.search(segment)
    extension = match.group(0) if match else ""
    marker = "%~" + _hash(segment)
    budget = MAX_SEGMENT_BYTES - len(marker) - len(extension)
    head, used = [], 0
    i = 0
    while i < len(segment):
        # an escape `%XX` is kept or dropped whole
        token = segment[i:i + 3] if segment[i] == "%" else segment[i]
        size = len(token.encode("utf-8"))
        if used + size > budget:
            break
        head.append(token)
        used += size
        i += len(token)
    return "".join(head) + marker + extension


def _safe_segment(segment: str, *, last: bool) -> str:
    if segment == "":
        return "%2F"
    if segment == ".":
        return "%2E"
    if segment == "..":
        return "%2E%2E"
    out = "".join(_percent(c) if _escaped_char(c) else c for c in segment)
    if out.startswith("-"):
        out = "%2D" + out[1:]
    out = _escape_dot_before(out, _RANK_SUFFIX if last else _OUTPUT_EXTENSION)
    return _shorten(out)


def safe_relpath(relpath: str) -> str:
    """The output relpath for a source's `relpath` (its path relative to its input root): relative,
    under any root it is joined to, readable, distinct for distinct NFC names (module docstring)."""
    if not isinstance(relpath, str):
        raise TypeError(f"relpath must be a str. Received: {type(relpath).__name__}")
    segments = unicodedata.normalize("NFC", relpath).split("/")
    safe = [_safe_segment(s, last=(i == len(segments) - 1)) for i, s in enumerate(segments)]
    joined = "/".join(safe)
    if len(joined.encode("utf-8")) > MAX_RELPATH_BYTES:
        joined = "%~" + _hash("/".join(safe[:-1])) + "/" + safe[-1]
    return joined


def output_relpath(source_uri: str, relpath: str) -> str:
    """The output relpath of the source at `source_uri` whose path relative to its input root is
    `relpath`: `safe_relpath(relpath)` with `%=<hash of the URI>` after the file name (module docstring).
    Distinct URIs give names that differ even after case folding."""
    folder, _, name = safe_relpath(relpath).rpartition("/")
    name = _shorten(name + "%=" + _hash(source_uri))
    return f"{folder}/{name}" if folder else name


# What a run writes at the top of its output root: the crop and saliency folders, the two tables, the
# report, and `_`-names (the run lock, the tables' staging folders). None of it is ever an input, even
# when an input pattern covers the output root (`--input 'photos/**' --output photos/out`).
ROOT_OUTPUTS = frozenset({"crops", "saliency", "metadata", "errors", "report.html"})


def is_run_output(uri: str, root: str) -> bool:
    """Whether `uri` is something gazecrop writes under the output `root` (`ROOT_OUTPUTS`, `_*`); both
    absolute (a scheme, or an absolute local path)."""
    prefix = root.rstrip("/") + "/"
    if not uri.startswith(prefix):
        return False
    top = uri[len(prefix):].split("/", 1)[0]
    return top in ROOT_OUTPUTS or top.startswith("_")


def check_relpath(relpath: str) -> str:
    """`relpath` if it is a safe output relpath (what `safe_relpath` returns); ValueError otherwise.

    The writer calls it on every name it joins to ROOT, so a record built anywhere else with a raw name
    cannot write outside ROOT.
    """
    segments = relpath.split("/")
    bad = (not relpath or relpath.startswith("/") or "\\" in relpath
           or any(s in ("", ".", "..") for s in segments)
           or any(_escaped_char(c) and c != "%" for c in relpath)
           or any(len(s.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for s in segments))
    if bad:
        raise ValueError(f"unsafe output path {relpath!r}: output names must come from "
                         f"gazecrop.paths.safe_relpath")
    return relpath
