"""Read stage (transforms/read.py): input roots, relative paths, matching and reading on the FnApiRunner."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.read import ReadImages, common_root, pattern_root, read_input_list, relative_path


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


def _uri_stage_type(row):
    return row["source_uri"], row["stage"], row["error_type"]


def test_local_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.jpg").write_bytes(b"x")
    with TestPipeline(runner="FnApiRunner") as p:
        sources, _ = p | ReadImages(patterns=["d/*.jpg", "./d/f.jpg"])
        assert_that(sources | beam.Map(_uri_and_relpath), equal_to([(str(tmp_path / "d" / "f.jpg"), "f.jpg", 1)]))


def test_read_images_matches_dedupes_and_reports_missing_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.jpg").write_bytes(b"1")
    (tmp_path / "a" / "b" / "two.png").write_bytes(b"22")
    missing = str(tmp_path / "a" / "missing.jpg")
    patterns = [str(tmp_path / "a" / "**"), str(tmp_path / "a" / "*.jpg"), str(tmp_path / "none" / "*.x")]
    with TestPipeline(runner="FnApiRunner") as p:
        sources, errors = p | ReadImages(patterns=patterns, listed_uris=[missing])
        assert_that(sources | "Sources" >> beam.Map(_uri_and_relpath), equal_to([
            (str(tmp_path / "a" / "one.jpg"), "one.jpg", 1),
            (str(tmp_path / "a" / "b" / "two.png"), "b/two.png", 2),
        ]), label="EveryFileOnce")
        assert_that(errors | "Errors" >> beam.Map(_uri_stage_type),
                    equal_to([(missing, "read", "FileNotFoundError")]), label="MissingFileIsAnError")


def test_gs_and_s3_filesystems_are_installed():
    from apache_beam.io.filesystems import FileSystems
    assert type(FileSystems.get_filesystem("gs://bucket/x.jpg")).__name__ == "GCSFileSystem"
    assert type(FileSystems.get_filesystem("s3://bucket/x.jpg")).__name__ == "S3FileSystem"
    import boto3  # noqa: F401  (Beam's S3 filesystem needs it at run time)
    assert pattern_root("s3://bucket/cat/*/x.jpg") == "s3://bucket/cat/"
