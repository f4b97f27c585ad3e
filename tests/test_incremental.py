"""`--incremental`: nightly runs crop only what is new or changed, and the tables keep one row set per
image, also after a run killed halfway (transforms/incremental.py)."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_accounted, read_tables, run_gazecrop

RATIOS = ["1:1", "16:9"]
ROOT = Path(__file__).resolve().parents[1]


def _copy_kodak(fixtures_dir: Path, folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted((fixtures_dir / "kodak").glob("*.png"))[:count]:
        if not (folder / source.name).exists():  # a file already there keeps its modification time
            shutil.copy(source, folder / source.name)
    return sorted(str(p) for p in folder.glob("*"))


def _run(inputs: Path, out: Path, *extra: str):
    return run_gazecrop(["--input", f"{inputs}/*", "--output", str(out), "--aspect_ratios", ",".join(RATIOS),
                         "--incremental", *extra])


def _keys(metadata: list[dict]) -> collections.Counter:
    return collections.Counter((r["source_uri"], r["aspect_ratio"], r["rank"]) for r in metadata)


def _no_duplicate_keys(metadata: list[dict], errors: list[dict]) -> None:
    assert max(_keys(metadata).values(), default=1) == 1
    assert max(collections.Counter(e["source_uri"] for e in errors).values(), default=1) == 1


def test_second_run_over_unchanged_input_processes_nothing(fixtures_dir, tmp_path):
    inputs = _copy_kodak(fixtures_dir, tmp_path / "in", 4)
    shutil.copy(fixtures_dir / "corrupt" / "not_an_image.jpg", tmp_path / "in" / "zz_bad.jpg")
    inputs = sorted(str(p) for p in (tmp_path / "in").glob("*"))
    first = _run(tmp_path / "in", tmp_path / "out")
    assert (first.processed, first.skipped) == (5, 0)
    metadata, errors = read_tables(tmp_path / "out")
    assert_accounted(metadata, errors, inputs, RATIOS)

    second = _run(tmp_path / "in", tmp_path / "out")
    # The four cropped images are skipped; the file that failed is tried again (an error is never
    # a reason to skip) and fails again.
    assert (second.processed, second.skipped) == (1, 4)
    # The summary does not call the retried failure "new or changed".
    assert second.incremental_line().startswith("processed 1 file (new, changed, failed before, or cropped")
    metadata2, errors2 = read_tables(tmp_path / "out")
    assert_accounted(metadata2, errors2, inputs, RATIOS)
    _no_duplicate_keys(metadata2, errors2)
    by_key = {(r["source_uri"], r["aspect_ratio"]): r for r in metadata}
    assert all(by_key[(r["source_uri"], r["aspect_ratio"])] == r for r in metadata2)  # rows kept as they were


def test_only_the_changed_image_is_reprocessed(fixtures_dir, tmp_path):
    inputs = _copy_kodak(fixtures_dir, tmp_path / "in", 4)
    _run(tmp_path / "in", tmp_path / "out")
    before, _ = read_tables(tmp_path / "out")

    changed = Path(inputs[1])
    shutil.copy(fixtures_dir / "kodak" / "kodim10.png", changed)  # new content under an old name
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))  # and a modification time that moved
    summary = _run(tmp_path / "in", tmp_path / "out")
    assert (summary.processed, summary.skipped) == (1, 3)

    after, errors = read_tables(tmp_path / "out")
    assert_accounted(after, errors, inputs, RATIOS)
    _no_duplicate_keys(after, errors)
    new = [r for r in after if r["source_uri"] == str(changed)]
    old = [r for r in before if r["source_uri"] == str(changed)]
    assert {r["source_sha256"] for r in new} != {r["source_sha256"] for r in old}
    assert all(r["processed_at"] > max(o["processed_at"] for o in before) for r in new)
    untouched = lambda rows: sorted((r for r in rows if r["source_uri"] != str(changed)),  # noqa: E731
                                    key=lambda r: (r["source_uri"], r["aspect_ratio"]))
    assert untouched(after) == untouched(before)


def test_other_settings_or_a_removed_source(fixtures_dir, tmp_path):
    inputs = _copy_kodak(fixtures_dir, tmp_path / "in", 3)
    _run(tmp_path / "in", tmp_path / "out")
    # Other crop settings: nothing is done yet for them, so everything is cropped again, and the
    # table holds only the new settings' rows.
    summary = _run(tmp_path / "in", tmp_path / "out", "--max_output_side", "64")
    assert (summary.processed, summary.skipped) == (3, 0)
    metadata, errors = read_tables(tmp_path / "out")
    assert_accounted(metadata, errors, inputs, RATIOS)
    assert max(max(r["output_width"], r["output_height"]) for r in metadata) == 64
    assert len({r["config_id"] for r in metadata}) == 1

    # A source that is gone (or outside this run's inputs) keeps its rows: nothing is forgotten.
    os.remove(inputs[0])
    summary = _run(tmp_path / "in", tmp_path / "out", "--max_output_side", "64")
    assert (summary.processed, summary.skipped) == (0, 2)
    metadata, errors = read_tables(tmp_path / "out")
    assert_accounted(metadata, errors, inputs, RATIOS)


def _crops_written(out: Path) -> int:
    return sum(1 for p in (out / "crops").rglob("*.jpg")) if (out / "crops").is_dir() else 0


def test_run_killed_halfway_then_restarted_records_every_image_once(fixtures_dir, tmp_path):
    """A first run records 4 images; 20 more arrive; the next run is killed (SIGKILL) once it has
    written some crops; the restarted run records every image exactly once."""
    inputs = tmp_path / "in"
    _copy_kodak(fixtures_dir, inputs, 4)
    _run(inputs, tmp_path / "out")
    table_before = (tmp_path / "out" / "metadata" / "metadata-00000-of-00001.parquet").read_bytes()
    all_inputs = _copy_kodak(fixtures_dir, inputs, 24)

    command = [sys.executable, "-m", "gazecrop.pipeline.run", "--input", f"{inputs}/*", "--output", str(tmp_path / "out"),
               "--aspect_ratios", ",".join(RATIOS), "--incremental", "--model", "tiny", "--batch_size", "1",
               "--runner=FnApiRunner"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    crops_before = _crops_written(tmp_path / "out")
    try:
        deadline = time.monotonic() + 120
        while _crops_written(tmp_path / "out") <= crops_before + len(RATIOS) and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            time.sleep(0.02)
        still_running = process.poll() is None
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert still_running, "the run ended before it could be killed halfway"
    written = _crops_written(tmp_path / "out")
    assert crops_before < written < len(all_inputs) * len(RATIOS)  # it had done some, not all
    # A file the killed run was writing stays behind under its temporary name (`<name>.<hex>.tmp`, never a
    # final name, so no row points at it); the restarted run must leave none of its own.
    left_by_kill = set((tmp_path / "out").rglob("*.tmp"))
    # Killed before its commit: the table is the previous run's, byte for byte.
    assert (tmp_path / "out" / "metadata" / "metadata-00000-of-00001.parquet").read_bytes() == table_before

    summary = _run(inputs, tmp_path / "out")
    assert (summary.processed, summary.skipped) == (20, 4)
    metadata, errors = read_tables(tmp_path / "out")
    assert_accounted(metadata, errors, all_inputs, RATIOS)
    _no_duplicate_keys(metadata, errors)
    assert _crops_written(tmp_path / "out") == len(all_inputs) * len(RATIOS)
    assert set((tmp_path / "out").rglob("*.tmp")) <= left_by_kill  # none left by the run that finished


@pytest.mark.parametrize("name", ["metadata", "errors"])
def test_first_incremental_run_needs_no_tables(fixtures_dir, tmp_path, name):
    inputs = _copy_kodak(fixtures_dir, tmp_path / "in", 1)
    summary = _run(tmp_path / "in", tmp_path / "out")
    assert (summary.processed, summary.skipped) == (1, 0)
    assert (tmp_path / "out" / name / f"{name}-00000-of-00001.parquet").is_file()
    metadata, errors = read_tables(tmp_path / "out")
    assert_accounted(metadata, errors, inputs, RATIOS)


def test_is_done_needs_the_same_file_model_settings_and_output_name():
    import datetime

    from gazecrop.transforms.incremental import is_done
    from gazecrop.transforms.read import MatchedFile
    modified = datetime.datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    file = MatchedFile(uri="/in/a.png", relpath="a.png", size_in_bytes=100,
                       modified_us=round(modified.timestamp() * 1_000_000))
    row = {"source_size": 100, "source_modified": modified, "model_version": "m1", "config_id": "c1",
           "output_uri": "/out/crops/1x1/a.png.jpg", "rank": 0}
    done = dict(root="/out", model_version="m1", config_id="c1")
    assert is_done(file, [row], **done)
    assert not is_done(file, [], **done)
    assert not is_done(file._replace(size_in_bytes=101), [row], **done)
    assert not is_done(file._replace(modified_us=file.modified_us + 1), [row], **done)
    assert not is_done(file._replace(modified_us=0), [row], **done)  # unknown time: never the same
    assert not is_done(file, [row], **{**done, "model_version": "m2"})
    assert not is_done(file, [row], **{**done, "config_id": "c2"})
    assert not is_done(file._replace(relpath="b/a.png"), [row], **done)  # named otherwise now
    assert not is_done(file, [{**row, "output_uri": "/elsewhere/crops/1x1/a.png.jpg"}], **done)
