"""`--incremental` and a file rewritten with other bytes of the same size, at the same time (issue 14,
item 11): locally `--incremental_check=content` compares SHA-256s; on gs:// every row records the
object's generation and `is_done` compares it (transforms/incremental.py, transforms/generations.py).

The same-size files are PPM images of one width and height (a PPM's size is fixed by its dimensions),
cut from different Kodak photos.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import cv2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import assert_accounted, read_tables, run_gazecrop

RATIOS = ["1:1", "16:9"]
PROJECT = "gazecrop-test"


def _ppm(fixtures_dir: Path, name: str, size: tuple[int, int] = (192, 128)) -> bytes:
    """A Kodak photo scaled to `size` as binary PPM: every such file has the same byte size."""
    image = cv2.imread(str(fixtures_dir / "kodak" / name), cv2.IMREAD_COLOR)
    ok, data = cv2.imencode(".ppm", cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    assert ok
    return data.tobytes()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(inputs: str, out: str, *extra: str):
    return run_gazecrop(["--input", f"{inputs}/*", "--output", out, "--aspect_ratios", ",".join(RATIOS),
                         "--incremental", *extra])


def _rows_of(metadata: list[dict], uri: str) -> list[dict]:
    return sorted((r for r in metadata if r["source_uri"] == uri), key=lambda r: r["aspect_ratio"])


def _crop_bytes(rows: list[dict]) -> list[bytes]:
    from apache_beam.io.filesystems import FileSystems
    out = []
    for row in rows:
        with FileSystems.open(row["output_uri"]) as f:
            out.append(f.read())
    return out


def _rewrite_keeping_size_and_time(path: Path, data: bytes) -> None:
    """`path` gets `data` (the same number of bytes) and its old access and modification times back, as
    `cp --preserve=timestamps` or `touch -r` leave a rewritten file."""
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


# ----------------------------------------------------------------------------------------------
# Local files: --incremental_check=content
# ----------------------------------------------------------------------------------------------

def test_local_rewrite_with_same_size_and_time_is_caught_by_the_content_check(fixtures_dir, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    a, b = inputs / "a.ppm", inputs / "b.ppm"
    old, new = _ppm(fixtures_dir, "kodim01.png"), _ppm(fixtures_dir, "kodim03.png")
    a.write_bytes(old)
    b.write_bytes(_ppm(fixtures_dir, "kodim02.png"))
    first = _run(str(inputs), str(out))
    assert (first.processed, first.skipped) == (2, 0)
    before, _ = read_tables(out)
    old_crops = _crop_bytes(_rows_of(before, str(a)))

    _rewrite_keeping_size_and_time(a, new)
    # The default check (`mtime`) compares size and modification time, so it cannot see this rewrite:
    # the rows stay those of the old bytes. That is what --incremental_check=content is for.
    default = _run(str(inputs), str(out))
    assert (default.processed, default.skipped) == (0, 2)
    stale, _ = read_tables(out)
    assert {r["source_sha256"] for r in _rows_of(stale, str(a))} == {_sha256(old)}

    content = _run(str(inputs), str(out), "--incremental_check=content")
    assert (content.processed, content.skipped) == (1, 1)
    after, errors = read_tables(out)
    assert_accounted(after, errors, [str(a), str(b)], RATIOS)
    assert {r["source_sha256"] for r in _rows_of(after, str(a))} == {_sha256(new)}
    new_crops = _crop_bytes(_rows_of(after, str(a)))
    assert all(o != n for o, n in zip(old_crops, new_crops))  # the crops are cut from the new picture
    assert _rows_of(after, str(b)) == _rows_of(before, str(b))  # the unchanged file's rows are kept
    assert {r["source_generation"] for r in after} == {None}  # local files have no generation

    # Now every file is as recorded: the content check reads both and skips both.
    again = _run(str(inputs), str(out), "--incremental_check=content")
    assert (again.processed, again.skipped) == (0, 2)


def test_local_table_from_before_the_generation_column_still_skips_unchanged_files(fixtures_dir, tmp_path):
    """A table written before `source_generation` existed is read as it is; local files never had a
    generation, so their size and time still decide."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (inputs / "a.ppm").write_bytes(_ppm(fixtures_dir, "kodim01.png"))
    _run(str(inputs), str(out))
    _drop_generation_column(str(out))
    second = _run(str(inputs), str(out))
    assert (second.processed, second.skipped) == (0, 1)
    metadata, _ = read_tables(out)
    assert {r["source_generation"] for r in metadata} == {None}


def test_incremental_check_option(capsys):
    from gazecrop.pipeline.options import parse
    assert parse(["--input", "x/*", "--incremental"])[0].incremental_check == "mtime"
    options, _ = parse(["--input", "x/*", "--incremental", "--incremental_check", "content"])
    assert options.incremental_check == "content"
    with pytest.raises(SystemExit):
        parse(["--input", "x/*", "--incremental_check", "content"])
    assert "--incremental_check needs --incremental" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--input", "x/*", "--incremental", "--incremental_check", "sha"])
    assert "invalid choice: 'sha'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# gs:// (a real GCS API server on loopback): the object generation
# ----------------------------------------------------------------------------------------------

def _table_uri(root: str) -> str:
    from gazecrop.transforms.metadata import table_path
    return table_path(root, "metadata")


def _rewrite_table(root: str, change) -> None:
    """Replace the metadata table under `root` by `change(table)`, in the table's own schema."""
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(_table_uri(root)) as f:
        table = pq.read_table(pa.BufferReader(f.read()))
    buffer = io.BytesIO()
    pq.write_table(change(table), buffer)
    with FileSystems.create(_table_uri(root)) as f:
        f.write(buffer.getvalue())


def _drop_generation_column(root: str) -> None:
    """Make the metadata table one written before `source_generation` existed."""
    _rewrite_table(root, lambda table: table.drop_columns(["source_generation"]))


def _upload(uri: str, data: bytes) -> None:
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.create(uri) as f:
        f.write(data)


def _blob(uri: str):
    """The object as the JSON API describes it now (size, generation, updated)."""
    from google.cloud import storage
    bucket, name = uri.removeprefix("gs://").split("/", 1)
    return storage.Client(project=PROJECT).bucket(bucket).get_blob(name)


@pytest.fixture
def gcs_catalog(gcs_server, fixtures_dir, request):
    """`(base, a, b)`: gs://BUCKET/<test name>/in/a.ppm and b.ppm, two same-size images."""
    base = f"{gcs_server}/{request.node.name}"
    a, b = f"{base}/in/a.ppm", f"{base}/in/b.ppm"
    _upload(a, _ppm(fixtures_dir, "kodim01.png"))
    _upload(b, _ppm(fixtures_dir, "kodim02.png"))
    return base, a, b


@pytest.mark.gcs
def test_gcs_rows_record_the_generation_and_a_same_size_rewrite_is_recropped(gcs_catalog, fixtures_dir):
    base, a, b = gcs_catalog
    first = _run(f"{base}/in", f"{base}/out")
    assert (first.processed, first.skipped) == (2, 0)
    before, _ = read_tables(f"{base}/out")
    listed = _blob(a)
    assert {r["source_generation"] for r in _rows_of(before, a)} == {str(listed.generation)}
    assert {r["source_generation"] for r in _rows_of(before, b)} == {str(_blob(b).generation)}

    new = _ppm(fixtures_dir, "kodim03.png")
    _upload(a, new)
    rewritten = _blob(a)
    assert rewritten.size == listed.size and rewritten.generation != listed.generation
    # The emulator stamps `updated` to the microsecond on every write, so there size and time alone
    # also see this rewrite; real GCS stamps milliseconds (next test).
    assert rewritten.updated != listed.updated

    second = _run(f"{base}/in", f"{base}/out")
    assert (second.processed, second.skipped) == (1, 1)
    after, errors = read_tables(f"{base}/out")
    assert_accounted(after, errors, [a, b], RATIOS)
    assert {(r["source_sha256"], r["source_generation"]) for r in _rows_of(after, a)} == {
        (_sha256(new), str(rewritten.generation))}
    assert _rows_of(after, b) == _rows_of(before, b)


@pytest.mark.gcs
def test_gcs_same_size_and_time_but_another_generation_is_recropped(gcs_catalog, fixtures_dir):
    """Real GCS stamps an object's `updated` time to the millisecond, so two uploads of the same size
    within one millisecond (a retried upload racing the first, two writers) list with the same size and
    time; only the generation differs. The emulator stamps microseconds, so this test stands in for such
    a listing: after a real rewrite it gives the row of the old object the time the listing shows now,
    keeping the old object's generation and SHA-256. The generation alone must tell the rewrite."""
    from apache_beam.io.filesystems import FileSystems

    from gazecrop.records import from_epoch_us, seconds_to_epoch_us
    base, a, b = gcs_catalog
    _run(f"{base}/in", f"{base}/out")
    new = _ppm(fixtures_dir, "kodim03.png")
    _upload(a, new)
    (now,) = FileSystems.match([a])[0].metadata_list
    listed_time = from_epoch_us(seconds_to_epoch_us(now.last_updated_in_seconds))

    def same_time_as_now(table: pa.Table) -> pa.Table:
        column = table.schema.get_field_index("source_modified")
        times = [listed_time if uri == a else t
                 for uri, t in zip(table.column("source_uri").to_pylist(), table.column(column).to_pylist())]
        return table.set_column(column, table.schema.field(column), pa.array(times, table.schema.field(column).type))

    _rewrite_table(f"{base}/out", same_time_as_now)
    second = _run(f"{base}/in", f"{base}/out")
    assert (second.processed, second.skipped) == (1, 1)
    after, errors = read_tables(f"{base}/out")
    assert_accounted(after, errors, [a, b], RATIOS)
    assert {(r["source_sha256"], r["source_generation"]) for r in _rows_of(after, a)} == {
        (_sha256(new), str(_blob(a).generation))}


@pytest.mark.gcs
def test_gcs_table_from_before_the_generation_column_recrops_gcs_files_once(gcs_catalog):
    """A table without `source_generation` (written before it existed) does not say which object a row
    was made from: its gs:// files are cropped again, once, and recorded with their generation."""
    base, a, b = gcs_catalog
    _run(f"{base}/in", f"{base}/out")
    _drop_generation_column(f"{base}/out")
    second = _run(f"{base}/in", f"{base}/out")
    assert (second.processed, second.skipped) == (2, 0)
    metadata, errors = read_tables(f"{base}/out")
    assert_accounted(metadata, errors, [a, b], RATIOS)
    assert {(r["source_uri"], r["source_generation"]) for r in metadata} == {
        (a, str(_blob(a).generation)), (b, str(_blob(b).generation))}
    third = _run(f"{base}/in", f"{base}/out")
    assert (third.processed, third.skipped) == (0, 2)


# ----------------------------------------------------------------------------------------------
# Streaming: a GCS notification names the generation
# ----------------------------------------------------------------------------------------------

def test_notification_carries_the_object_generation():
    from streamload import notification

    from gazecrop.transforms.stream import notification_to_file, parse_notification
    data, attributes = notification("b", "in/a.png", {
        "bucket": "b", "name": "in/a.png", "size": "10", "updated": "2026-11-27T17:30:00.123Z",
        "generation": "1700000000000001"})
    matched = notification_to_file(parse_notification(data, attributes), input_prefix="gs://b/in/",
                                   output_root="gs://b/out")
    assert matched.generation == "1700000000000001"


# ----------------------------------------------------------------------------------------------
# The generation listing itself (transforms/generations.py)
# ----------------------------------------------------------------------------------------------

def test_listing_prefixes_one_per_directory():
    from gazecrop.transforms.generations import listing_prefixes
    assert listing_prefixes(["in/kodim01.png", "in/kodim02.png", "in/sub/x.png", "in/b.ppm", "top.png"]) == {
        "in/": "in/", "in/sub/x.png": "in/sub/", "top.png": ""}
    assert listing_prefixes(["in/kodim01.png", "in/kodim02.png"]) == {"in/kodim0": "in/"}


@pytest.mark.gcs
def test_list_generations_from_one_listing_per_directory(gcs_server):
    from apache_beam.io.gcp import gcsio

    from gazecrop.transforms.generations import list_generations
    base = "listing"
    names = [f"{base}/a.png", f"{base}/a.png.bak", f"{base}/sub/a.png", f"{base}/[x].png"]
    for name in names:
        _upload(f"{gcs_server}/{name}", name.encode())
    bucket = gcs_server.removeprefix("gs://")
    client = gcsio.GcsIO().client
    wanted = [f"{base}/a.png", f"{base}/sub/a.png", f"{base}/[x].png", f"{base}/gone.png"]
    assert list_generations(client, bucket, wanted) == {
        name: str(_blob(f"{gcs_server}/{name}").generation) for name in wanted[:3]}  # gone.png: unknown
    assert list_generations(client, "no-such-bucket-gazecrop", wanted) == {}  # logged, all unknown


def test_is_done_on_gcs_needs_the_same_generation():
    import datetime

    from gazecrop.transforms.incremental import is_done
    from gazecrop.transforms.read import MatchedFile
    modified = datetime.datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=datetime.timezone.utc)
    file = MatchedFile(uri="gs://b/in/a.png", relpath="a.png", size_in_bytes=100,
                       modified_us=round(modified.timestamp() * 1_000_000), generation="1764244800123000")
    row = {"source_size": 100, "source_modified": modified, "source_generation": "1764244800123000",
           "model_version": "m1", "config_id": "c1", "output_uri": "/out/crops/1x1/a.png.jpg", "rank": 0}
    done = dict(root="/out", model_version="m1", config_id="c1")
    assert is_done(file, [row], **done)
    assert not is_done(file, [{**row, "source_generation": "1764244800123001"}], **done)  # same size, time
    assert not is_done(file, [{**row, "source_generation": None}], **done)  # a table from before the column
    assert not is_done(file, [{k: v for k, v in row.items() if k != "source_generation"}], **done)
    assert not is_done(file._replace(generation=""), [row], **done)  # the listing did not say
    local = file._replace(uri="/in/a.png", generation="")
    assert is_done(local, [{**row, "source_generation": None}], **done)  # local files: size and time


def test_content_check_of_a_file_that_cannot_be_read_processes_it(tmp_path):
    """A file gone between the listing and the content check is processed: the read stage records why."""
    from gazecrop.transforms.incremental import content_unchanged, file_sha256
    from gazecrop.transforms.read import MatchedFile
    path = tmp_path / "a.ppm"
    path.write_bytes(b"P6 1 1 255 abc")
    file = MatchedFile(uri=str(path), relpath="a.ppm", size_in_bytes=14, modified_us=1)
    assert file_sha256(str(path)) == _sha256(b"P6 1 1 255 abc")
    assert content_unchanged(file, [{"source_sha256": _sha256(b"P6 1 1 255 abc")}])
    assert not content_unchanged(file, [{"source_sha256": _sha256(b"other")}])
    path.unlink()
    assert not content_unchanged(file, [{"source_sha256": _sha256(b"P6 1 1 255 abc")}])
