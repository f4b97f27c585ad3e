"""Read stage (transforms/read.py): input roots, relative paths, matching and reading on the FnApiRunner."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from gazecrop.paths import output_relpath
from gazecrop.transforms.read import ReadImages, common_root, pattern_root, read_input_list, relative_path


def test_pattern_root_is_the_directory_before_the_first_wildcard():
    assert pattern_root("photos/**/*.jpg") == "photos/"
    assert pattern_root("gs://bucket/cat/2024-*/img?.png") == "gs://bucket/cat/"
    assert pattern_root("/data/a/b/file.jpg") == "/data/a/b/"
    assert pattern_root("*.jpg") == ""
    assert pattern_root("/data/x[0-9]/*.jpg") == "/data/"


def test_common_root_of_listed_uris():
    assert common_root(["gs://b/a/x/1.jpg", "gs://b/a/y/2.jpg"]) == "gs://b/a/"
    assert common_root(["/d/photos/1.jpg", "/d/photos2/2.jpg"]) == "/d/"  # directories, not characters
    assert common_root(["/d/p/1.jpg"]) == "/d/p/"


def test_relative_path_uses_the_longest_containing_root():
    assert relative_path("/d/a/b/c.jpg", ["/d/", "/d/a/"]) == "b/c.jpg"
    assert relative_path("gs://b/x/y.png", ["gs://b/"]) == "x/y.png"
    assert relative_path("/elsewhere/z.png", ["/d/"]) == "z.png"


def test_read_input_list_skips_blanks_and_comments(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# catalog\n/d/a.jpg\n\n  gs://b/c.png  \n")
    assert read_input_list(str(listing)) == ["/d/a.jpg", "gs://b/c.png"]


def _uri_and_relpath(source):
    return source.uri, source.relpath, len(source.data)


def _named(path, relpath: str, size: int):
    """What `_uri_and_relpath` gives for the file at `path` named `relpath` relative to its root."""
    return str(path), output_relpath(str(path), relpath), size


def _uri_stage_type(row):
    return row["source_uri"], row["stage"], row["error_type"]


def test_local_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.jpg").write_bytes(b"x")
    with TestPipeline(runner="FnApiRunner") as p:
        sources, _ = p | ReadImages(patterns=["d/*.jpg", "./d/f.jpg"], output_root=str(tmp_path / "out"))
        assert_that(sources | beam.Map(_uri_and_relpath), equal_to([_named(tmp_path / "d" / "f.jpg", "f.jpg", 1)]))


def test_read_images_matches_dedupes_and_reports_missing_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.jpg").write_bytes(b"1")
    (tmp_path / "a" / "b" / "two.png").write_bytes(b"22")
    missing = str(tmp_path / "a" / "missing.jpg")
    patterns = [str(tmp_path / "a" / "**"), str(tmp_path / "a" / "*.jpg"), str(tmp_path / "none" / "*.x")]
    with TestPipeline(runner="FnApiRunner") as p:
        sources, errors = p | ReadImages(patterns=patterns, listed_uris=[missing], output_root=str(tmp_path / "out"))
        assert_that(sources | "Sources" >> beam.Map(_uri_and_relpath), equal_to([
            _named(tmp_path / "a" / "one.jpg", "one.jpg", 1),
            _named(tmp_path / "a" / "b" / "two.png", "b/two.png", 2),
        ]), label="EveryFileOnce")
        assert_that(errors | "Errors" >> beam.Map(_uri_stage_type),
                    equal_to([(missing, "read", "FileNotFoundError")]), label="MissingFileIsAnError")


def test_gs_and_s3_filesystems_are_installed():
    from apache_beam.io.filesystems import FileSystems
    assert type(FileSystems.get_filesystem("gs://bucket/x.jpg")).__name__ == "GCSFileSystem"
    assert type(FileSystems.get_filesystem("s3://bucket/x.jpg")).__name__ == "S3FileSystem"
    import boto3  # noqa: F401  (Beam's S3 filesystem needs it at run time)
    assert pattern_root("s3://bucket/cat/*/x.jpg") == "s3://bucket/cat/"


# --- limits before work: --max_input_bytes ---------------------------------------------------------

def test_files_over_max_input_bytes_become_one_read_error_naming_size_and_limit(tmp_path):
    (tmp_path / "small.jpg").write_bytes(b"s" * 50)
    (tmp_path / "big.jpg").write_bytes(b"b" * 500)
    with TestPipeline(runner="FnApiRunner") as p:
        sources, errors = p | ReadImages(patterns=[str(tmp_path / "*.jpg")], output_root=str(tmp_path / "out"),
                                         max_input_bytes=100)
        assert_that(sources | "Sources" >> beam.Map(_uri_and_relpath),
                    equal_to([_named(tmp_path / "small.jpg", "small.jpg", 50)]), label="SmallIsRead")
        assert_that(errors | "Errors" >> beam.Map(lambda r: (r["source_uri"], r["stage"], r["error_type"],
                                                             r["message"])),
                    equal_to([(str(tmp_path / "big.jpg"), "read", "InputTooLargeError",
                               "file is 500 bytes, over --max_input_bytes=100")]), label="BigIsAnError")


def test_the_limit_is_checked_before_reading_and_while_reading(tmp_path, monkeypatch):
    from apache_beam.io.filesystems import FileSystems

    from gazecrop.transforms.read import InputTooLargeError, read_bytes
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    opened = []
    real_open = FileSystems.open
    monkeypatch.setattr(FileSystems, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    with pytest.raises(InputTooLargeError, match="11 bytes, over --max_input_bytes=10"):
        read_bytes(str(path), 11, 10)  # refused from the matched size: the file is never opened
    assert opened == []
    assert read_bytes(str(path), 10, 10) == b"x" * 10
    path.write_bytes(b"x" * 1000)  # it grew after the match: at most limit + 1 bytes are read
    with pytest.raises(InputTooLargeError, match="grew after it was matched at 10 bytes"):
        read_bytes(str(path), 10, 10)
    assert read_bytes(str(path), 10, 0) == b"x" * 1000  # 0 disables the limit


def test_files_are_read_as_stored_never_decompressed_by_their_name(tmp_path):
    """A `.gz` name must not make the reader inflate it (a way round --max_input_bytes)."""
    import gzip

    from gazecrop.transforms.read import read_bytes
    packed = gzip.compress(b"\0" * 1_000_000)
    (tmp_path / "bomb.jpg.gz").write_bytes(packed)
    assert read_bytes(str(tmp_path / "bomb.jpg.gz"), len(packed), 10_000) == packed


def test_max_input_bytes_option():
    from gazecrop.pipeline.options import parse
    assert parse(["--input", "x"])[0].max_input_bytes == 200_000_000
    assert parse(["--input", "x", "--max_input_bytes", "0"])[0].max_input_bytes == 0
    with pytest.raises(SystemExit):
        parse(["--input", "x", "--max_input_bytes", "-1"])


def test_glob_regex_follows_the_documented_rules():
    from gazecrop.transforms.read import glob_regex

    def matches(pattern, uri):
        return glob_regex(pattern).fullmatch(uri) is not None
    assert matches("/d/*.png", "/d/back\\slash.png")  # a backslash is a character, not an escape
    assert not matches("/d/*.png", "/d/sub/a.png")  # `*` stays within a folder
    assert matches("/d/**/*.png", "/d/a.png") and matches("/d/**/*.png", "/d/x/y/a.png")  # `**/`: 0+ folders
    assert matches("/d/**", "/d/x/y/a.png")
    assert matches("/d/q?.png", "/d/qz.png") and matches("/d/q?.png", "/d/q?.png")
    assert not matches("/d/q?.png", "/d/q/.png")
    assert matches("/d/br[[]1].png", "/d/br[1].png") and not matches("/d/br[[]1].png", "/d/b1.png")
    assert matches("/d/x[0-9].jpg", "/d/x7.jpg") and not matches("/d/x[!0-9].jpg", "/d/x7.jpg")
    assert matches("/d/br[1.png", "/d/br[1.png")  # an unclosed `[` is itself
    assert matches("/d/a+b(1).png", "/d/a+b(1).png")  # regular-expression characters are themselves
    assert matches("/d/new*", "/d/new\nline")
