"""Nightly incremental runs (`--incremental`): crop only the images that are new or changed.

**What makes an image done.** Its metadata rows in the existing table were made from the same file
(`source_uri`, and the `source_size` and `source_modified` the listing reports now; for a gs:// object
also its `source_generation`, see `gazecrop.transforms.generations`), by the same model (`model_version`), with
the same crop settings (`config_id`: `settings_id` of every option that shapes a crop, plus the image's
own --focus hint) and under the same output name. Such an image is not read at all. Every other matched
file is processed: new, changed, cropped with other settings, or failed last time (an error row is never
a reason to skip: a storage hiccup deserves a retry, and a broken file costs only a failed decode).

**Which version of a file** (`--incremental_check`):

* `mtime` (default): the size and modification time the listing reports, and on gs:// the object
  generation. A gs:// object gets a new generation with every write, so there this is exact. A local
  file rewritten with other bytes of the same size whose modification time is then set back
  (`cp --preserve=timestamps`, `touch -r`, `os.utime`, a restore from a backup) looks unchanged, as
  does an s3:// object rewritten with the same size within the resolution of its listed time.
* `content`: as `mtime`, then each file that looks unchanged and has no generation is read and its
  SHA-256 compared with the rows' `source_sha256` (`content_unchanged`): a read of every such file, but
  no decode and no model call. gs:// files need no read (their generation already decides).

A gs:// row without a generation (a table written before `source_generation` existed, or a listing that
failed) never counts as done: the first run after the upgrade crops such files again, once.

**One row per key in the table a user reads.** The run rewrites the two tables, as one file each (the
batch layout of `gazecrop.transforms.metadata`), from:

* metadata: the rows of this run, plus the old rows of images skipped as done, plus the old rows of
  sources this run did not match at all (a run over part of a catalog forgets nothing);
* errors: the error rows of this run, plus the old error rows of sources this run did not match.

A source this run matched has its old rows dropped unless they are kept as done, so no source is ever
both in the old and the new rows. Each table file is committed by a rename when the whole run has
succeeded (Beam's file sinks write temporary files and rename them at the end), so a run killed
halfway leaves the previous tables as they were, and the next run redoes what it had not recorded:
every image ends recorded exactly once. (The crops it had written are rewritten with the same bytes.)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from gazecrop.search import Focus
from gazecrop.transforms.generations import has_generations
from gazecrop.transforms.metadata import table_path
from gazecrop.transforms.read import MatchedFile
from gazecrop.records import to_epoch_us
from gazecrop.transforms.select import focus_key
from gazecrop.transforms.write import image_config_id, relpath_of_output

_LOGGER = logging.getLogger(__name__)


# --incremental_check: how a file is known to be the version its rows were made from (module docstring).
INCREMENTAL_CHECKS = ("mtime", "content")


def is_done(file: MatchedFile, rows: list[dict], *, root: str, model_version: str, config_id: str) -> bool:
    """Whether the old metadata `rows` of `file`'s URI were made from this very file, model and settings,
    under the output name it gets now. Unknown sizes, times (0) or gs:// generations never count as the
    same."""
    if not rows or not file.modified_us:
        return False
    return all(
        _same_listing(file, row)
        and row.get("model_version") == model_version
        and row.get("config_id") == config_id
        and _output_relpath(root, row) == file.relpath
        for row in rows)


def _same_listing(file: MatchedFile, row: dict) -> bool:
    """The row was made from the file as listed now: same size and time, and on gs:// same generation
    (a row without one, from an older table, is not known to be)."""
    if row.get("source_size") != file.size_in_bytes or to_epoch_us(row.get("source_modified")) != file.modified_us:
        return False
    if has_generations(file.uri):
        return bool(file.generation) and row.get("source_generation") == file.generation
    return True


def file_sha256(uri: str) -> str:
    """The SHA-256 of the file's bytes as stored (as `source_sha256` is), read in chunks (never whole in
    memory)."""
    with FileSystems.open(uri, mime_type="application/octet-stream",
                          compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def content_unchanged(file: MatchedFile, rows: list[dict]) -> bool:
    """`--incremental_check=content`: whether the file's bytes now are those its rows were made from
    (SHA-256). A file that cannot be read is not: it goes on to the read stage, which records why."""
    try:
        sha256 = file_sha256(file.uri)
    except Exception as e:  # noqa: BLE001 (any read failure: the read stage retries and reports it)
        _LOGGER.info("Could not hash %s for --incremental_check=content (%s): processing it", file.uri, e)
        return False
    return all(row.get("source_sha256") == sha256 for row in rows)


def _output_relpath(root: str, row: dict) -> str | None:
    """The source relpath a row's crop was named from; None if its `output_uri` is not a crop of ROOT
    (a table copied from elsewhere): such rows are never taken as done."""
    try:
        return relpath_of_output(root, row["output_uri"], row["rank"])
    except ValueError:
        return None


class _SplitFn(beam.DoFn):
    """One source URI's matched file (if any) and its old rows: the file to process, or the old rows
    to keep (`KEPT_METADATA`, `KEPT_ERRORS`)."""

    KEPT_METADATA = "kept_metadata"
    KEPT_ERRORS = "kept_errors"
    SKIPPED = "skipped"  # the MatchedFiles that are done

    def __init__(self, *, root: str, model_version: str, settings: str, focus: Mapping[str, Focus],
                 check: str = "mtime"):
        self._root = root
        self._model_version = model_version
        self._settings = settings
        self._focus = focus
        self._check = check
        self._skipped = beam.metrics.Metrics.counter("gazecrop", "files_skipped_unchanged")
        self._to_process = beam.metrics.Metrics.counter("gazecrop", "files_new_or_changed")
        self._hashed = beam.metrics.Metrics.counter("gazecrop", "files_content_checked")
        self._content_changed = beam.metrics.Metrics.counter("gazecrop", "files_content_changed")

    def process(self, keyed):
        _, grouped = keyed
        files, rows, errors = list(grouped["files"]), list(grouped["metadata"]), list(grouped["errors"])
        if not files:  # not matched by this run: keep what the tables say about it
            for row in rows:
                yield beam.pvalue.TaggedOutput(self.KEPT_METADATA, row)
            for row in errors:
                yield beam.pvalue.TaggedOutput(self.KEPT_ERRORS, row)
            return
        file = files[0]  # MatchImages yields each URI once
        key = focus_key(self._focus, file.uri)
        config_id = image_config_id(self._settings, None if key is None else self._focus[key])
        if self._done(file, rows, config_id):
            self._skipped.inc()
            yield beam.pvalue.TaggedOutput(self.SKIPPED, file)
            for row in rows:
                yield beam.pvalue.TaggedOutput(self.KEPT_METADATA, row)
        else:
            self._to_process.inc()
            yield file

    def _done(self, file: MatchedFile, rows: list[dict], config_id: str) -> bool:
        """`is_done`, then with --incremental_check=content the bytes of a file without a generation."""
        if not is_done(file, rows, root=self._root, model_version=self._model_version, config_id=config_id):
            return False
        if self._check != "content" or file.generation:
            return True
        self._hashed.inc()
        if content_unchanged(file, rows):
            return True
        self._content_changed.inc()
        _LOGGER.info("%s has the recorded size and time but other content: cropping it again", file.uri)
        return False


def _old_rows(pbegin, root: str, name: str, label: str):
    """The rows of an existing table (dicts), or an empty PCollection when there is none yet."""
    path = table_path(root, name)
    if FileSystems.exists(path):
        return pbegin | label >> beam.io.ReadFromParquet(path)
    return pbegin | label >> beam.Create([])


class SkipUnchanged(beam.PTransform):
    """Join this run's matched files with the existing tables under `root` by source URI.

    Applied to the `MatchedFile`s; returns `(to_process, kept_metadata_rows, kept_error_rows, skipped)`
    (see the module docstring for which old rows are kept; `skipped` are the files found done).
    `check`: --incremental_check, one of INCREMENTAL_CHECKS (see the module docstring).
    """

    def __init__(self, *, root: str, model_version: str, settings: str,
                 focus: Mapping[str, Focus] | None = None, check: str = "mtime"):
        super().__init__()
        if check not in INCREMENTAL_CHECKS:
            raise ValueError(f"check must be one of {', '.join(INCREMENTAL_CHECKS)}. Received: check={check!r}")
        self._root = root
        self._model_version = model_version
        self._settings = settings
        self._focus = dict(focus or {})
        self._check = check

    def expand(self, matched):
        pbegin = matched.pipeline
        metadata = _old_rows(pbegin, self._root, "metadata", "OldMetadata")
        errors = _old_rows(pbegin, self._root, "errors", "OldErrors")
        results = (
            {"files": matched | "FileByUri" >> beam.Map(lambda f: (f.uri, f)),
             "metadata": metadata | "MetadataByUri" >> beam.Map(lambda r: (r["source_uri"], r)),
             "errors": errors | "ErrorsByUri" >> beam.Map(lambda r: (r["source_uri"], r))}
            | "BySourceUri" >> beam.CoGroupByKey()
            | "Split" >> beam.ParDo(_SplitFn(root=self._root, model_version=self._model_version,
                                             settings=self._settings, focus=self._focus,
                                             check=self._check)).with_outputs(
                _SplitFn.KEPT_METADATA, _SplitFn.KEPT_ERRORS, _SplitFn.SKIPPED, main="to_process"))
        return (results.to_process, results[_SplitFn.KEPT_METADATA], results[_SplitFn.KEPT_ERRORS],
                results[_SplitFn.SKIPPED])
