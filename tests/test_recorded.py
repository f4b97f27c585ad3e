"""transforms/recorded.py: what a restarted streaming job skips, and one delivery per file identity."""

from __future__ import annotations

import datetime

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from gazecrop.transforms.metadata import ERRORS_SCHEMA, METADATA_SCHEMA
from gazecrop.paths import output_relpath
from gazecrop.transforms.read import MatchedFile
from gazecrop.transforms.recorded import FirstDelivery, SkipRecorded, load_recorded

UTC = datetime.timezone.utc
MODIFIED = datetime.datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
MODIFIED_US = round(MODIFIED.timestamp() * 1_000_000)


def _write(path, schema, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    full = [{name: row.get(name) for name in schema.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=schema.with_metadata(None)), path)


def _metadata_row(uri, size, modified=MODIFIED, ratio="1:1"):
    return {"source_uri": uri, "source_sha256": "s", "source_size": size, "source_modified": modified,
            "source_width": 1, "source_height": 1, "aspect_ratio": ratio, "rank": 0, "crop_x": 0, "crop_y": 0,
            "crop_width": 1, "crop_height": 1, "focal_x": 0, "focal_y": 0, "saliency_kept": 1.0,
            "output_uri": "/o/crops/1x1/a.jpg", "output_width": 1, "output_height": 1, "model_version": "v",
            "config_id": "c", "processed_at": MODIFIED}


def _error_row(uri, stage, at):
    return {"source_uri": uri, "stage": stage, "error_type": "E", "message": "m", "processed_at": at}


def _tables(root):
    """A batch table and two window files of metadata; a window file of errors."""
    _write(root / "metadata" / "metadata-00000-of-00001.parquet", METADATA_SCHEMA,
           [_metadata_row("gs://b/in/batch.jpg", 10)])
    _write(root / "metadata" / "stream-a-run1-00000-of-00001.parquet", METADATA_SCHEMA,
           [_metadata_row("gs://b/in/done.jpg", 20), _metadata_row("gs://b/in/done.jpg", 20, ratio="16:9")])
    _write(root / "metadata" / "stream-b-run1-00000-of-00001.parquet", METADATA_SCHEMA,
           [_metadata_row("gs://b/in/old.jpg", 30, modified=MODIFIED - datetime.timedelta(days=1))])
    later, earlier = MODIFIED + datetime.timedelta(seconds=5), MODIFIED - datetime.timedelta(seconds=5)
    _write(root / "errors" / "stream-a-run1-00000-of-00001.parquet", ERRORS_SCHEMA,
           [_error_row("gs://b/in/broken.jpg", "decode", later),        # failed on these very bytes
            _error_row("gs://b/in/fixed.jpg", "decode", earlier),       # replaced after it failed
            _error_row("gs://b/in/hiccup.jpg", "read", later)])         # a storage error: retried
    # Beam's temporary files and staging folders are not table files.
    _write(root / "metadata" / ".temp-beam-x" / "partial.parquet", METADATA_SCHEMA,
           [_metadata_row("gs://b/in/partial.jpg", 40)])


def test_load_recorded_reads_every_table_file(tmp_path):
    _tables(tmp_path)
    recorded, failed = load_recorded(str(tmp_path))
    assert recorded == {("gs://b/in/batch.jpg", 10, MODIFIED_US), ("gs://b/in/done.jpg", 20, MODIFIED_US),
                        ("gs://b/in/old.jpg", 30, MODIFIED_US - 86_400_000_000)}
    assert set(failed) == {"gs://b/in/broken.jpg", "gs://b/in/fixed.jpg"}


def test_the_index_is_loaded_once_per_job_in_a_process(tmp_path):
    from apache_beam.internal import pickler

    from gazecrop.transforms.recorded import _SkipRecordedFn
    _tables(tmp_path)
    first = _SkipRecordedFn(str(tmp_path))
    first.setup()
    _write(tmp_path / "metadata" / "stream-c-run1-00000-of-00001.parquet", METADATA_SCHEMA,
           [_metadata_row("gs://b/in/later.jpg", 60)])
    again = pickler.loads(pickler.dumps(first))  # the same job's DoFn, as a runner sends it per bundle
    again.setup()
    assert len(again._recorded) == 3  # the index the job started with
    next_job = _SkipRecordedFn(str(tmp_path))
    next_job.setup()
    assert ("gs://b/in/later.jpg", 60, MODIFIED_US) in next_job._recorded


def _file(name, size, modified_us=MODIFIED_US):
    return MatchedFile(uri=f"gs://b/in/{name}", relpath=name, size_in_bytes=size, modified_us=modified_us)


def test_restarted_job_skips_recorded_files_and_takes_each_delivery_once(tmp_path):
    _tables(tmp_path)
    arriving = [
        _file("batch.jpg", 10), _file("done.jpg", 20),  # recorded: skipped
        _file("old.jpg", 30),                            # rewritten since it was recorded: new identity
        _file("broken.jpg", 5), _file("fixed.jpg", 6), _file("hiccup.jpg", 7),
        _file("partial.jpg", 40),                        # only in a temporary file: not recorded
        _file("batch.jpg", 10, 0),                       # time unknown: never taken as recorded
        _file("new.jpg", 50), _file("new.jpg", 50),      # notified and listed: once
        _file("new.jpg", 51, MODIFIED_US + 1),           # then overwritten: another identity
    ]
    with TestPipeline() as p:
        passed = (p | beam.Create(arriving)
                  | SkipRecorded(root=str(tmp_path))
                  | FirstDelivery()
                  | beam.Map(lambda f: (f.relpath, f.size_in_bytes)))
        assert_that(passed, equal_to([("old.jpg", 30), ("fixed.jpg", 6), ("hiccup.jpg", 7), ("partial.jpg", 40),
                                      ("batch.jpg", 10), ("new.jpg", 50), ("new.jpg", 51)]))


def test_an_identity_is_forgotten_once_the_watermark_passes_its_time_and_kept_until_then():
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.utils.timestamp import Timestamp

    t0 = Timestamp.now().micros // 1_000_000 + 3600  # later than now: each time counts from the element's time
    a, b = _file("a.jpg", 1), _file("b.jpg", 2)
    stream = (TestStream()
              .add_elements([beam.window.TimestampedValue(a, t0), beam.window.TimestampedValue(b, t0 + 5),
                             beam.window.TimestampedValue(a, t0 + 6)])        # a again: dropped
              .advance_watermark_to(t0 + 12)                                  # a forgotten (t0 + 10), b kept
              .add_elements([beam.window.TimestampedValue(a, t0 + 13),        # passes again
                             beam.window.TimestampedValue(b, t0 + 14)])       # dropped
              .advance_watermark_to(t0 + 100)                                 # all forgotten
              .add_elements([beam.window.TimestampedValue(b, t0 + 101)])      # passes again
              .advance_watermark_to_infinity())
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        passed = (p | stream
                  | FirstDelivery(remember_secs=10, buckets=1)  # one bucket: both files share its timer
                  | beam.Map(lambda f, t=beam.DoFn.TimestampParam: (f.relpath, round(t.micros / 1e6 - t0))))
        assert_that(passed, equal_to([("a.jpg", 0), ("b.jpg", 5), ("a.jpg", 13), ("b.jpg", 101)]))


def test_catch_up_lists_the_prefix_but_not_the_jobs_own_outputs(tmp_path):
    from gazecrop.pipeline.stream import CatchUp
    for name in ("a.jpg", "sub/b.png", "out/crops/1x1/a.jpg.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    with TestPipeline() as p:
        files, errors = p | CatchUp(prefix=f"{tmp_path}/", output_root=str(tmp_path / "out"))
        assert_that(files | beam.Map(lambda f: (f.uri, f.relpath)),
                    equal_to([(f"{tmp_path}/a.jpg", output_relpath(f"{tmp_path}/a.jpg", "a.jpg")),
                              (f"{tmp_path}/sub/b.png", output_relpath(f"{tmp_path}/sub/b.png", "sub/b.png"))]))
        assert_that(errors, equal_to([]), label="NoErrors")


def test_catch_up_is_on_by_default_with_an_input_prefix():
    import pytest

    from gazecrop.pipeline.options import parse
    subscription = ["--streaming", "--input_subscription", "projects/p/subscriptions/s"]
    assert parse([*subscription, "--input_prefix", "gs://b/in/"])[0].catch_up is True
    assert parse([*subscription, "--input_prefix", "gs://b/in/", "--catch_up", "false"])[0].catch_up is False
    assert parse(subscription)[0].catch_up is False
    with pytest.raises(SystemExit):
        parse([*subscription, "--catch_up"])  # nothing to list
