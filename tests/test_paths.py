"""Output names from hostile input names (core/paths.py, `gazecrop.paths`): property tests, and one pipeline run
over real images copied under hostile local names.

The properties, over generated names (`..` segments, `//`, leading `/`, backslashes, unicode in NFC and
NFD, spaces, newlines and other control characters, leading dashes, glob characters, `%` escapes,
names longer than a file system allows, case-only differences):
  * the output path stays under the folder it is joined to, whatever suffix the writer appends;
  * the rule is deterministic and maps canonically equivalent names (NFC/NFD) to one name;
  * distinct NFC names give distinct outputs (a decoder inverts every unshortened output);
  * over a run, distinct source URIs give outputs distinct even on a case-insensitive store.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gazecrop.paths import (MAX_RELPATH_BYTES, MAX_SEGMENT_BYTES, check_relpath, is_run_output,
                            output_relpath, safe_relpath)


def collision_key(relpath: str) -> str:
    """Two output relpaths with the same key are one file on a case-insensitive, normalising store."""
    return unicodedata.normalize("NFC", relpath.casefold())

# Deterministic (CI reruns the same examples), no example database, no per-example deadline.
PROPERTY = settings(derandomize=True, max_examples=400, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Pieces that hostile names are made of, mixed with arbitrary characters (surrogates included).
_PIECES = ["..", ".", "/", "//", "\\", "-", "--", " ", "\n", "\r", "\t", "\x00", "\x7f", "\x85", "%", "%2E",
           "%2F", "%25", "%~", "%=", "*", "?", "[", "]", "~", "é", "e\u0301", "É", "ß", "SS", "ﬃ", "İ", "A", "a",
           "\u202e", "\u2028", "\ud800", "\udcff", "😀", ".jpg", ".JPG", ".png", ".npy", ".rank1", ".rank12",
           "rank", "x" * 120, "é" * 70, "😀" * 50, ":", "C:", "gs:", "<img src=x onerror=alert(1)>"]
_CHARS = st.characters(exclude_categories=())  # any code point, surrogates included
NAMES = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(_CHARS, max_size=4)), max_size=12).map("".join)

SUFFIXES = [".jpg", ".rank3.webp", ".npy", ".rank12.png.0123456789abcdef0123456789abcdef.tmp"]
ROOT = "/out/crops/16x9"


def _unescape(output: str) -> str:
    """The NFC input name of an output that was not shortened (test-side inverse of the rule)."""
    segments = []
    for segment in output.split("/"):
        special = {"%2F": "", "%2E": ".", "%2E%2E": ".."}
        if segment in special:
            segments.append(special[segment])
            continue
        raw = bytearray()
        i = 0
        while i < len(segment):
            if segment[i] == "%":
                raw += bytes([int(segment[i + 1:i + 3], 16)])
                i += 3
            else:
                raw += segment[i].encode("utf-8")
                i += 1
        segments.append(raw.decode("utf-8", "surrogatepass"))
    return "/".join(segments)


def _shortened(output: str) -> bool:
    return "%~" in output


@PROPERTY
@given(NAMES)
def test_output_stays_under_the_root_for_any_suffix(name):
    out = safe_relpath(name)
    assert check_relpath(out) == out
    for suffix in SUFFIXES:
        joined = posixpath.join(ROOT, out + suffix)
        assert posixpath.normpath(joined) == joined  # nothing for normpath to resolve: no ., .., //
        assert joined.startswith(ROOT + "/")
    segments = out.split("/")
    assert all(s not in ("", ".", "..") for s in segments)
    assert not out.startswith("/") and "\\" not in out
    assert all(len(s.encode("utf-8")) <= MAX_SEGMENT_BYTES for s in segments)
    assert len(segments[-1].encode("utf-8")) + len(SUFFIXES[-1]) <= 255  # the longest (temporary) file name
    assert len(out.encode("utf-8")) <= MAX_RELPATH_BYTES
    assert not any(s.startswith("-") for s in segments)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069*?\[\]]", out)
    out.encode("utf-8")  # no unpaired surrogate: every name can be written


@PROPERTY
@given(NAMES)
def test_deterministic_and_canonically_equivalent_names_agree(name):
    assert safe_relpath(name) == safe_relpath(name)
    assert safe_relpath(unicodedata.normalize("NFD", name)) == safe_relpath(name)


@PROPERTY
@given(NAMES)
def test_unshortened_outputs_decode_back_to_the_name(name):
    """Injectivity: the rule has a left inverse wherever it did not shorten."""
    out = safe_relpath(name)
    if not _shortened(out):
        assert _unescape(out) == unicodedata.normalize("NFC", name)


@PROPERTY
@given(NAMES, NAMES, st.sampled_from(["", "x", ".rank1", "/", "é", "%", " ", "a" * 300]))
def test_distinct_names_give_distinct_outputs(a, b, tail):
    for x, y in ((a, b), (a, a + tail), (a + tail, b + tail), ("d/" + a, "d//" + a)):
        if unicodedata.normalize("NFC", x) != unicodedata.normalize("NFC", y):
            assert safe_relpath(x) != safe_relpath(y), (x, y)


@PROPERTY
@given(NAMES, NAMES, st.integers(1, 20), st.sampled_from(["jpg", "png", "webp", "npy", "JPG"]))
def test_writer_suffixes_never_make_two_outputs_one(a, b, rank, ext):
    """`<a>.rank<k>.<ext>` (rank k of a) is never `<b>.<ext>` (rank 0 of b); a folder never has the name
    of a crop or saliency file beside it."""
    for b in (b, f"{a}.rank{rank}"):
        assert f"{safe_relpath(a)}.rank{rank}.{ext}" != f"{safe_relpath(b)}.{ext}"
    for c in (b, f"{a}.{ext}/{b}"):
        folders = safe_relpath(c).split("/")[:-1]
        for depth in range(len(folders)):
            assert f"{safe_relpath(a)}.{ext}" != "/".join(folders[:depth + 1])


def test_examples_of_the_rule():
    assert safe_relpath("kodak/kodim01.png") == "kodak/kodim01.png"
    assert safe_relpath("../../etc/passwd") == "%2E%2E/%2E%2E/etc/passwd"
    assert safe_relpath("/abs/x.png") == "%2F/abs/x.png"
    assert safe_relpath("a//b.jpg") == "a/%2F/b.jpg"
    assert safe_relpath("-rf.jpg") == "%2Drf.jpg"
    assert safe_relpath("new\nline.jpg") == "new%0Aline.jpg"
    assert safe_relpath("a..b.jpg") == "a..b.jpg"
    assert safe_relpath("with space é.jpg") == "with space é.jpg"
    assert safe_relpath("e\u0301.jpg") == "\u00e9.jpg"
    assert safe_relpath("%41.jpg") == "%2541.jpg"
    assert safe_relpath("IMG [1]*.jpg") == "IMG %5B1%5D%2A.jpg"
    assert safe_relpath("photo.rank1") == "photo%2Erank1"
    assert safe_relpath("a.jpg/b.png") == "a%2Ejpg/b.png"
    long = safe_relpath("x" * 300 + ".jpeg")
    assert len(long.encode()) == MAX_SEGMENT_BYTES and re.fullmatch(r"x+%~[0-9a-f]{16}\.jpeg", long)
    assert safe_relpath("x" * 300 + "1.jpeg") != long


def _variants(name: str) -> list[str]:
    """Names that are distinct objects but one file on a case-insensitive, normalising store."""
    return [name, name.upper(), name.lower(), name.swapcase(), unicodedata.normalize("NFD", name)]


ROOTS = ["gs://b/", "gs://c/", "/in/", "/in//"]


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(ROOTS), NAMES, st.integers(0, 4)), max_size=8))
def test_sources_never_share_an_output_even_on_a_case_insensitive_store(drawn):
    files = {(root + variant, variant) for root, name, n in drawn for variant in _variants(name)[:n + 1]}
    names = {uri: output_relpath(uri, name) for uri, name in files}
    keys = [collision_key(n) for n in names.values()]
    assert len(set(keys)) == len(keys)
    for out in names.values():
        check_relpath(out)


def test_every_name_carries_a_hash_of_its_source_and_nothing_else():
    """The name is a function of the source alone: the same relpath under two roots (or in two runs that
    each match only one of them) gives two names, the same source always the same name."""
    digest = hashlib.sha256(b"/a/y.jpg").hexdigest()[:16]
    assert output_relpath("/a/y.jpg", "y.jpg") == f"y.jpg%={digest}"
    assert output_relpath("/a/x.jpg", "x.jpg") != output_relpath("/b/x.jpg", "x.jpg")
    assert output_relpath("/a/Photo.jpg", "sub/Photo.jpg").startswith("sub/Photo.jpg%=")  # case, folders kept
    assert re.fullmatch(r"br%5B1%5D\.png%=[0-9a-f]{16}", output_relpath("/a/br[1].png", "br[1].png"))


def test_run_outputs_are_the_folders_and_underscore_names_at_the_top_of_the_root():
    assert is_run_output("/p/out/crops/1x1/a.jpg", "/p/out")
    assert is_run_output("/p/out/metadata/metadata-00000-of-00001.parquet", "/p/out/")
    assert is_run_output("gs://b/o/_gazecrop.lock", "gs://b/o")
    assert is_run_output("/p/out/report.html", "/p/out")
    assert not is_run_output("/p/out/demo-inputs/a.png", "/p/out")
    assert not is_run_output("/p/outside/crops/a.jpg", "/p/out")
    assert not is_run_output("/p/photos/crops/a.jpg", "/p/out")


# --- the pipeline over hostile local names ---------------------------------------------------------

HOSTILE = [
    "with space.jpg", "ünïcödé.jpg", "\u00e9.jpg", "e\u0301.jpg",  # NFC and NFD: two files, one name
    "-rf.jpg", "a..b.jpg", "..jpg", "Case.jpg", "case.jpg", "new\nline.jpg", "%41.jpg", "star*[1].jpg",
    "photo", "photo.rank1",  # no extension; 'photo.rank1' is not photo's rank-1 crop
    "png_named.jpg",  # wrong extension: PNG bytes
    "\u202egpj.png", "L" * 240 + ".jpg", "a", "sub dir/..hidden.jpg", "sub dir/-x/-y.gif", "a.jpg/inner.jpg",
]


def test_hostile_local_names_stay_under_root_and_every_input_is_accounted(fixtures_dir, tmp_path):
    from conftest import read_tables, run_gazecrop

    jpeg = fixtures_dir / "edge_cases" / "pillow_hopper.jpg"
    png = fixtures_dir / "alpha_png" / "pillow_pil123rgba.png"
    gif = fixtures_dir / "edge_cases" / "pillow_hopper.gif"
    inputs, root = tmp_path / "in", tmp_path / "out"
    for name in HOSTILE:
        path = inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        source = gif if name.endswith(".gif") else png if name.endswith(".png") or name == "png_named.jpg" \
            else jpeg
        shutil.copyfile(source, path)
    sources = sorted(str(p) for p in inputs.rglob("*") if p.is_file())
    assert len(sources) == len(HOSTILE)  # the file system kept every name apart (NFC/NFD, case)

    run_gazecrop(["--input", str(inputs / "**"), "--output", str(root), "--aspect_ratios", "1:1,16:9",
                  "--save_saliency", "--max_output_side", "64"])

    metadata, errors = read_tables(root)
    assert not errors, errors
    assert sorted({r["source_uri"] for r in metadata}) == sources  # every input accounted
    assert len(metadata) == 2 * len(sources)
    outputs = [r["output_uri"] for r in metadata]
    assert len(set(outputs)) == len(outputs)
    assert len({collision_key(o) for o in outputs}) == len(outputs)  # distinct on a case-insensitive store too
    real_root = os.path.realpath(root)
    written = set()
    for folder, _, files in os.walk(tmp_path):
        for file in files:
            path = os.path.realpath(os.path.join(folder, file))
            assert path.startswith(real_root + os.sep) or path.startswith(os.path.realpath(inputs) + os.sep)
            if path.startswith(real_root + os.sep):
                written.add(os.path.relpath(path, real_root))
    crops = {w for w in written if w.startswith("crops" + os.sep)}
    assert crops == {os.path.relpath(o, real_root) for o in outputs}  # no stray or temporary file
    assert len([w for w in written if w.startswith("saliency" + os.sep)]) == 2 * len(sources)  # .npy, .png
    assert all(not part.startswith("-") for w in written for part in w.split(os.sep))
