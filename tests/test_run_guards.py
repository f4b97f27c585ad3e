"""`gazecrop run` guards (issue 14, items 8-10), through the real command on real fixture files with the
tiny model: numeric options out of range are refused before any work; a --focus table is resolved to
source URIs, clamped or refused row by row before any work; the exit status says when a run matched
nothing or when too many of its files failed.
"""

from __future__ import annotations

import logging
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import read_tables
from gazecrop.pipeline.run import main

TINY = ["--model", "tiny", "--runner=FnApiRunner", "--progress", "off"]


def _nothing_written(root) -> bool:
    """No crop and no table under ROOT: the run stopped before any work."""
    return not (root / "crops").exists() and not (root / "metadata").exists() and not (root / "errors").exists()


# ----------------------------------------------------------------------------------------------
# Item 8: every numeric option has a documented range, checked before any work
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--max_megapixels", "nan"),            # turned the decompression-bomb guard off
    ("--max_megapixels", "inf"),
    ("--max_megapixels", "5000"),
    ("--candidates", "1000"),               # 4,000 files per image
    ("--aspect_ratios", "9223372036854775807:1"),  # overflowed into a 1x512 crop labelled with it
    ("--aspect_ratios", "99999999999999999999:1"),  # failed every image
    ("--aspect_ratios", "1000:1"),
    ("--aspect_ratios", ",".join(f"{w}:{w + 1}" for w in range(1, 18))),  # 17 crop files per image
    ("--batch_size", "100000"),
    ("--min_scale", "inf"),
    ("--max_input_bytes", "99999999999999"),
    ("--max_output_side", "100000"),
    ("--max_failure_ratio", "nan"),
    ("--max_failure_ratio", "1.5"),
    ("--window_seconds", "inf"),            # streaming options too
    ("--poll_interval_secs", "0.001"),
    ("--streaming_duration_secs", "nan"),
])
def test_out_of_range_options_are_refused_before_any_work(fixtures_dir, tmp_path, capsys, option, value):
    root = tmp_path / "out"
    argv = ["--input", str(fixtures_dir / "kodak" / "kodim01.png"), "--output", str(root), *TINY, option, value]
    if option in ("--window_seconds", "--poll_interval_secs", "--streaming_duration_secs"):
        argv = ["--streaming", *argv]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert option in err and "Received:" in err, err
    assert _nothing_written(root)


def test_every_range_is_in_its_options_help_and_its_ends_are_accepted():
    from gazecrop.pipeline.options import RANGES, build_parser, parse
    helps = {action.dest: action.help for action in build_parser()._actions}
    for name, accepted in RANGES.items():
        assert f"range {accepted};" in helps[name], name
    options, _ = parse(["--candidates", "10", "--max_megapixels", "1000", "--aspect_ratios", "10000:100,1:100",
                        "--max_failure_ratio", "0", "--batch_size", "1024", "--max_megapixels", "0"])
    assert (options.candidates, options.aspect_ratios, options.max_failure_ratio) == (10, ((10000, 100), (1, 100)), 0)


# ----------------------------------------------------------------------------------------------
# Item 9: the --focus table
# ----------------------------------------------------------------------------------------------

def test_focus_rows_find_their_images_by_uri_and_huge_values_are_clamped(fixtures_dir, tmp_path, caplog, capsys):
    """Case twins A.png/a.png (their output names are disambiguated) get their hint from a relative key,
    and a 1e308 row is clamped to the picture instead of failing its crop batch."""
    kodak = fixtures_dir / "kodak"
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(kodak / "kodim01.png", inputs / "A.png")
    shutil.copy(kodak / "kodim03.png", inputs / "a.png")
    shutil.copy(kodak / "kodim02.png", inputs / "huge.png")
    shutil.copy(kodak / "kodim05.png", inputs / "plain.png")
    focus = tmp_path / "focus.csv"
    focus.write_text("source,x,y,width,height\n"
                     "A.png,760,505,,\n"                     # bottom-right corner of a 768x512 picture
                     "a.png,2,3,,\n"                         # top-left corner
                     "huge.png,1e308,1e308,1e308,1e308\n")
    root = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code = main(["--input", f"{inputs}/*.png", "--output", str(root), "--aspect_ratios", "1:1,9:16",
                     "--focus", str(focus), *TINY])
    assert code == 0
    metadata, errors = read_tables(root)
    assert errors == []
    assert not [r for r in caplog.records if "names no input file" in r.getMessage()]
    assert "named no input file" not in capsys.readouterr().out
    rows = {}
    for row in metadata:
        rows.setdefault(row["source_uri"].rsplit("/", 1)[1], []).append(row)
    assert sorted(rows) == ["A.png", "a.png", "huge.png", "plain.png"]
    for name, (x, y) in (("A.png", (760, 505)), ("a.png", (2, 3))):
        for row in rows[name]:
            assert row["crop_x"] <= x < row["crop_x"] + row["crop_width"], row
            assert row["crop_y"] <= y < row["crop_y"] + row["crop_height"], row
    for row in rows["huge.png"]:  # a region past the bottom-right edge, clamped to the last pixel
        assert row["crop_x"] + row["crop_width"] == row["source_width"], row
        assert row["crop_y"] + row["crop_height"] == row["source_height"], row


def _parquet(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


BAD_TABLES = {
    "negative": (lambda d: (d / "f.csv", "source,x,y\nkodim01.png,5,5\nkodim02.png,-3,5\n"), "row 3", "x='-3'"),
    "nan": (lambda d: (d / "f.csv", "source,x,y\nkodim01.png,nan,5\n"), "row 2", "x='nan'"),
    "inf width": (lambda d: (d / "f.csv", "source,x,y,width,height\nkodim01.png,1,5,inf,3\n"), "row 2", "width"),
    "duplicate key": (lambda d: (d / "f.csv", "source,x,y\nkodim01.png,1,1\nkodim02.png,2,2\nkodim01.png,3,3\n"),
                      "row 2", "row 4"),
    "relative and absolute": (lambda d: (d / "f.csv", f"source,x,y\nkodim01.png,1,1\n{d}/in/kodim01.png,3,3\n"),
                              "row 2", "row 3"),
    "not UTF-8": (lambda d: (d / "f.csv", "source,x,y\nkodim01.png,1,1\ncaf\u00e9.png,2,2\n".encode("latin-1")),
                  "line 3", "UTF-8"),
    "text in x": (lambda d: (_parquet(d / "f.parquet", source=["kodim01.png"], x=["5"], y=[5.0]), None),
                  "column x is string", "expected numbers"),
    "numbers as keys": (lambda d: (_parquet(d / "f.parquet", source=[1], x=[5], y=[5]), None),
                        "column source is int64", "expected text"),
    "lacks y": (lambda d: (d / "f.csv", "source,x\nkodim01.png,1\n"), "lacks column(s) y", "expected columns"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_a_bad_focus_table_stops_the_run_before_any_work_naming_file_and_row(fixtures_dir, tmp_path, capsys,
                                                                             case):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("kodim01.png", "kodim02.png"):
        shutil.copy(fixtures_dir / "kodak" / name, inputs / name)
    make, *expected = BAD_TABLES[case]
    path, content = make(tmp_path)
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    root = tmp_path / "out"
    code = main(["--input", f"{inputs}/*.png", "--output", str(root), "--focus", str(path), *TINY])
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("gazecrop run: error: focus table"), err
    assert str(path) in err[0] and all(text.strip() in err[0] for text in expected), err
    assert _nothing_written(root)


def test_a_relative_focus_key_naming_files_under_two_input_roots_is_refused(fixtures_dir, tmp_path, capsys):
    for folder, name in (("xa", "kodim01.png"), ("xb", "kodim03.png")):
        (tmp_path / folder).mkdir()
        shutil.copy(fixtures_dir / "kodak" / name, tmp_path / folder / "a.png")
    focus = tmp_path / "focus.csv"
    focus.write_text("source,x,y\na.png,5,5\n")
    root = tmp_path / "out"
    code = main(["--input", f"{tmp_path}/xa/*", "--input", f"{tmp_path}/xb/*", "--output", str(root),
                 "--focus", str(focus), *TINY])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{focus} row 2: 'a.png' names a file under 2 input roots" in err
    assert f"{tmp_path}/xa/a.png" in err and f"{tmp_path}/xb/a.png" in err
    assert _nothing_written(root)


# ----------------------------------------------------------------------------------------------
# Item 10: the exit status
# ----------------------------------------------------------------------------------------------

def test_an_input_that_matches_nothing_exits_3_before_any_work(tmp_path, capsys):
    root = tmp_path / "out"
    assert main(["--input", f"{tmp_path}/nosuch/*.jpg", "--output", str(root), *TINY]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gazecrop run: --input {tmp_path}/nosuch/*.jpg matches no file; nothing was done "
                   "(no table written)"]
    assert _nothing_written(root)


def test_too_many_failures_exit_4_counting_only_the_files_this_run_processed(fixtures_dir, tmp_path, capsys):
    """A few corrupt uploads pass; a run whose processed files mostly failed exits 4, tables written. With
    --incremental the ratio is over this run's files, not the unchanged ones it skipped."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("kodim01.png", "kodim02.png", "kodim03.png"):
        shutil.copy(fixtures_dir / "kodak" / name, inputs / name)
    shutil.copy(fixtures_dir / "corrupt" / "not_an_image.jpg", inputs / "bad1.jpg")
    root = tmp_path / "out"
    argv = ["--input", f"{inputs}/*", "--output", str(root), "--aspect_ratios", "1:1", "--incremental", *TINY]
    assert main(argv) == 0                                   # 1 of 4 failed: a corrupt upload
    assert "FAILED" not in capsys.readouterr().out
    for name in ("bad2.jpg", "bad3.jpg"):
        shutil.copy(fixtures_dir / "corrupt" / "empty_zero_bytes.jpg", inputs / name)
    # This run processes the 2 new files (both fail) and retries bad1, which had failed before and is not
    # counted: 2 of 2 fail (over all 6 files it would be 3 of 6).
    assert main(argv) == 4
    out = capsys.readouterr().out
    assert ("gazecrop: the run FAILED: 2 of the 2 files it processed failed (100%) (files that had failed "
            "before are retried, not counted), over --max_failure_ratio=0.5") in out
    metadata, errors = read_tables(root)                     # the tables are still written
    assert len({r["source_uri"] for r in metadata}) == 3
    assert sorted(e["source_uri"].rsplit("/", 1)[1] for e in errors) == ["bad1.jpg", "bad2.jpg", "bad3.jpg"]
    # A quiet night: nothing new, the three known failures retried and failing again: the run is fine.
    assert main(argv) == 0
    assert "FAILED" not in capsys.readouterr().out
    assert main([*argv, "--max_failure_ratio", "0"]) == 0   # nothing new failed, even at 0
    shutil.copy(fixtures_dir / "corrupt" / "not_an_image.jpg", inputs / "bad4.jpg")
    assert main([*argv, "--max_failure_ratio", "1"]) == 0   # 1: failures never fail the run
