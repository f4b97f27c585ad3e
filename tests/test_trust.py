"""The catalog contract through `gazecrop run` on real files: every matched file ends as its rows or exactly
one error row, every row describes the crop at its `output_uri`, across runs, odd names and layouts
(issue 14 items 1, 2, 3, 5, and the property test over hostile names)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import read_tables, run_gazecrop

REPO = Path(__file__).resolve().parents[1]


def _kodak(fixtures_dir: Path) -> list[Path]:
    return sorted((fixtures_dir / "kodak").glob("*.png"))


def _place(files: dict[Path, Path]) -> None:
    for path, source in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)


def _run(*args: str, output: Path, extra: tuple[str, ...] = ()):
    inputs = [a for pattern in args for a in ("--input", pattern)]
    return run_gazecrop([*inputs, "--output", str(output), "--aspect_ratios", "1:1", "--output_format", "png",
                         *extra])


def _read_image(path: str) -> np.ndarray:
    """RGB pixels of an image file, by its exact name (no pattern, any characters)."""
    return cv2.cvtColor(cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def assert_every_crop_shows_its_own_source(metadata: list[dict], sources: dict[str, Path]) -> None:
    """Each row's PNG crop is exactly its source's pixels in the row's box (`sources`: source URI to the
    fixture file it holds), and no two sources share an output_uri."""
    owners = {}
    for row in metadata:
        assert owners.setdefault(row["output_uri"], row["source_uri"]) == row["source_uri"], row["output_uri"]
        x, y, w, h = row["crop_x"], row["crop_y"], row["crop_width"], row["crop_height"]
        expected = _read_image(str(sources[row["source_uri"]]))[y:y + h, x:x + w]
        assert np.array_equal(_read_image(row["output_uri"]), expected), (row["source_uri"], row["output_uri"])


# --- 1. the same name in two folders, across runs --------------------------------------------------------

def test_the_same_name_in_two_folders_keeps_two_crops_across_incremental_runs(fixtures_dir, tmp_path):
    kodim01, kodim03 = fixtures_dir / "kodak" / "kodim01.png", fixtures_dir / "kodak" / "kodim03.png"
    a, b = tmp_path / "xa" / "a.png", tmp_path / "xb" / "a.png"
    _place({a: kodim01, b: kodim03})
    out = tmp_path / "out"
    _run(f"{tmp_path}/xa/*", output=out, extra=("--incremental",))
    _run(f"{tmp_path}/xb/*", output=out, extra=("--incremental",))
    metadata, errors = read_tables(out)
    assert not errors
    assert sorted(r["source_uri"] for r in metadata) == [str(a), str(b)]
    assert_every_crop_shows_its_own_source(metadata, {str(a): kodim01, str(b): kodim03})

    again = _run(f"{tmp_path}/xa/*", output=out, extra=("--incremental",))
    assert (again.processed, again.skipped) == (0, 1)  # truly unchanged: its own crop is still there
    assert_every_crop_shows_its_own_source(read_tables(out)[0], {str(a): kodim01, str(b): kodim03})


# --- 2. names with glob characters ---------------------------------------------------------------------------

GLOB_NAMES = ["back\\slash.png", "br[1].png", "q?.png", "qz.png", "st*r.png", "b1.png"]


def test_files_named_with_glob_characters_are_matched_by_their_exact_names(fixtures_dir, tmp_path):
    photos = dict(zip((tmp_path / "in" / n for n in GLOB_NAMES), _kodak(fixtures_dir)))
    _place(photos)
    _run(f"{tmp_path}/in/*", output=tmp_path / "out")
    metadata, errors = read_tables(tmp_path / "out")
    assert not errors
    assert sorted(r["source_uri"] for r in metadata) == sorted(str(p) for p in photos)
    assert_every_crop_shows_its_own_source(metadata, {str(p): s for p, s in photos.items()})


def test_input_list_entries_are_literal_names_never_patterns(fixtures_dir, tmp_path):
    photos = dict(zip((tmp_path / "in" / n for n in GLOB_NAMES), _kodak(fixtures_dir)))
    _place(photos)
    listed = [tmp_path / "in" / "q?.png", tmp_path / "in" / "br[1].png", tmp_path / "in" / "back\\slash.png"]
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in listed))
    run_gazecrop(["--input_list", str(tmp_path / "list.txt"), "--output", str(tmp_path / "out"),
                  "--aspect_ratios", "1:1"])
    metadata, errors = read_tables(tmp_path / "out")
    assert not errors
    # `q?.png` does not also crop `qz.png`, `br[1].png` is not `b1.png`.
    assert sorted(r["source_uri"] for r in metadata) == sorted(str(p) for p in listed)


@pytest.mark.gcs
def test_gcs_object_names_with_glob_characters(gcs_server, fixtures_dir, tmp_path):
    from apache_beam.io.filesystems import FileSystems
    prefix = f"{gcs_server}/globs"
    photos = dict(zip((f"{prefix}/in/{n}" for n in GLOB_NAMES), _kodak(fixtures_dir)))
    for uri, source in photos.items():
        with FileSystems.create(uri) as f:
            f.write(source.read_bytes())
    _run(f"{prefix}/in/*", output=tmp_path / "out")
    metadata, errors = read_tables(tmp_path / "out")
    assert not errors
    assert sorted(r["source_uri"] for r in metadata) == sorted(photos)

    (tmp_path / "list.txt").write_text(f"{prefix}/in/q?.png\n")
    run_gazecrop(["--input_list", str(tmp_path / "list.txt"), "--output", str(tmp_path / "listed"),
                  "--aspect_ratios", "1:1"])
    metadata, errors = read_tables(tmp_path / "listed")
    assert [r["source_uri"] for r in metadata] == [f"{prefix}/in/q?.png"] and not errors


# --- 3. the output root inside the input ------------------------------------------------------------------

def test_an_output_root_inside_the_input_is_never_read_back(fixtures_dir, tmp_path):
    photos = tmp_path / "photos"
    sources = {photos / "a" / "one.png": _kodak(fixtures_dir)[0], photos / "two.png": _kodak(fixtures_dir)[1]}
    _place(sources)
    for _ in range(2):  # the second run sees the first run's crops and tables under photos/out
        _run(f"{photos}/**", output=photos / "out", extra=("--save_saliency",))
    metadata, errors = read_tables(photos / "out")
    assert not errors
    assert sorted(r["source_uri"] for r in metadata) == sorted(str(p) for p in sources)
    crops = sorted((photos / "out" / "crops").rglob("*.png"))
    assert len(crops) == 2 and not any("crops" in str(c.relative_to(photos / "out" / "crops")) for c in crops)


# --- 5. special files --------------------------------------------------------------------------------------

def test_a_fifo_matched_by_the_pattern_becomes_a_read_error_and_the_run_finishes(fixtures_dir, tmp_path):
    inputs = tmp_path / "in"
    _place({inputs / "photo.png": _kodak(fixtures_dir)[0]})
    os.mkfifo(inputs / "pipe.jpg")  # nobody writes to it: opening it for reading would block forever
    command = [sys.executable, "-m", "gazecrop.pipeline.run", "--input", f"{inputs}/*", "--output", str(tmp_path / "out"),
               "--aspect_ratios", "1:1", "--model", "tiny", "--runner=FnApiRunner", "--progress", "off"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metadata, errors = read_tables(tmp_path / "out")
    assert [r["source_uri"] for r in metadata] == [str(inputs / "photo.png")]
    assert [(e["source_uri"], e["stage"], e["error_type"]) for e in errors] == \
        [(str(inputs / "pipe.jpg"), "read", "NotARegularFileError")]
    assert "FIFO" in errors[0]["message"]


# --- the property: hostile names in two roots, two incremental runs ----------------------------------------

# Characters that break naive code: glob characters, backslash, separators of other systems, a newline,
# percent escapes, dots, a leading dash, letters with case and with decompositions.
_HOSTILE_CHARS = "[]*?\\%\n .-_:;'\"#~aAbBéÉ\u0301ßẞıİ漢ﬁ"
_NAME = st.text(alphabet=_HOSTILE_CHARS, min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))


def _twins(name: str, case: bool, normal: bool, long: bool) -> list[str]:
    """The name, and names that are distinct files but one name after case folding or Unicode
    normalisation, or a name of 250 bytes."""
    names = [name + ".png"]
    if case:
        names.append(name.swapcase() + ".png")
    if normal:
        names.append(unicodedata.normalize("NFD", name) + ".png")
        names.append(unicodedata.normalize("NFC", name) + ".png")
    if long:
        stem = (name * 250).encode()[:246].decode("utf-8", "ignore")
        names.append(stem + ".png")
    return [n for n in dict.fromkeys(names) if len(n.encode()) <= 250]


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(st.tuples(_NAME, st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=3))
@example(drawn=[("br[1] q?*\\x", True, False, False), ("Éé\u0301\nz", True, True, True)])
def test_hostile_names_in_two_roots_over_two_incremental_runs(fixtures_dir, tmp_path_factory, drawn):
    """Every name (and its case, normalisation and 250-byte twins) in two input roots, each file holding a
    different photo; a first --incremental run over one root, a second over the other (and the first
    again): every file accounted exactly once, no two sources share an output_uri, every crop file's
    pixels are its own source's."""
    work = tmp_path_factory.mktemp("hostile")
    names = list(dict.fromkeys(twin for name, case, normal, long in drawn
                               for twin in _twins(name, case, normal, long)))
    paths = [work / root / name for name in names for root in ("root0", "root1")]
    photos = _kodak(fixtures_dir)
    files = dict(zip(paths[:len(photos)], photos))
    _place(files)
    written = {str(p) for p in (work / "root0").glob("*")} | {str(p) for p in (work / "root1").glob("*")}
    assert written == {str(p) for p in files}  # the file system kept every name apart

    out = work / "out"
    _run(f"{work}/root0/**", output=out, extra=("--incremental",))
    _run(f"{work}/root1/**", f"{work}/root0/*", output=out, extra=("--incremental",))
    metadata, errors = read_tables(out)
    assert not errors, errors
    assert sorted(r["source_uri"] for r in metadata) == sorted(str(p) for p in files)
    assert_every_crop_shows_its_own_source(metadata, {str(p): s for p, s in files.items()})
