"""Metadata stage: the metadata and errors tables, as Parquet, with explicit schemas.

* `ROOT/metadata/metadata-00000-of-00001.parquet`: one row per image x aspect ratio x rank
  (`METADATA_SCHEMA`; rank 0 only, i.e. one row per image x ratio, unless --candidates > 1).
* `ROOT/errors/errors-00000-of-00001.parquet`: one row per image that failed (`ERRORS_SCHEMA`).

Each table is one file with a fixed name, so a rerun replaces it rather than leaving shards of an older
run beside it; a run with no failures still writes a readable errors file with zero rows. Row order
within a file is not meaningful. `processed_at` is the only column that changes between reruns.

**Commit.** Beam's Parquet sink writes the file under `ROOT/<table>/_staging-<run id>/` (its own
temporary files, then a rename there); the finished file is then renamed over the table's fixed name in
one step (`os.rename` replaces a local file atomically; on gs:// and s3:// the copy that renames creates
the new object whole). So a reader, or a run killed at any moment, sees the previous table or the new
one, never a truncated or missing file. (Beam's sink alone deletes the old file before renaming the new
one into place.) Readers that treat `ROOT/metadata/` as a dataset skip `_staging` as they skip every
name starting with `_`.
"""

from __future__ import annotations

import uuid

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import WriteToParquet

from gazecrop.transforms.read import join

_TIMESTAMP = pa.timestamp("us", tz="UTC")

METADATA_SCHEMA = pa.schema([
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("source_sha256", pa.string(), nullable=False),
    pa.field("source_size", pa.int64(), nullable=False),  # bytes
    pa.field("source_modified", _TIMESTAMP, nullable=True),  # as the listing reported it; null: unknown
    # The gs:// object generation the listing reported (transforms/generations.py); null: none known (local
    # files, s3://, and every row of a table written before this column existed).
    pa.field("source_generation", pa.string(), nullable=True),
    pa.field("source_width", pa.int32(), nullable=False),  # after EXIF orientation
    pa.field("source_height", pa.int32(), nullable=False),
    pa.field("aspect_ratio", pa.string(), nullable=False),  # "16:9"
    pa.field("rank", pa.int32(), nullable=False),  # 0 = best crop of the ratio; 1.. with --candidates > 1
    pa.field("crop_x", pa.int32(), nullable=False),  # source pixels after EXIF orientation
    pa.field("crop_y", pa.int32(), nullable=False),
    pa.field("crop_width", pa.int32(), nullable=False),
    pa.field("crop_height", pa.int32(), nullable=False),
    pa.field("focal_x", pa.int32(), nullable=False),  # saliency peak, source pixels
    pa.field("focal_y", pa.int32(), nullable=False),
    pa.field("saliency_kept", pa.float64(), nullable=False),  # share of the density inside the crop
    pa.field("output_uri", pa.string(), nullable=False),
    pa.field("output_width", pa.int32(), nullable=False),
    pa.field("output_height", pa.int32(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("config_id", pa.string(), nullable=False),  # fingerprint of the crop settings (+ focus hint)
    pa.field("processed_at", _TIMESTAMP, nullable=False),
])

ERRORS_SCHEMA = pa.schema([
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),  # read, decode, inference, crop, write
    pa.field("error_type", pa.string(), nullable=False),  # exception class, e.g. ImageTooLargeError
    pa.field("message", pa.string(), nullable=False),
    pa.field("processed_at", _TIMESTAMP, nullable=False),
])


_METADATA_COLUMNS = tuple(METADATA_SCHEMA.names)


def metadata_row(columns: dict) -> dict:
    """`columns` as one row of the metadata table, in `METADATA_SCHEMA`'s order: the schema is the one list
    of the table's columns, so a column missing from the row, or one the schema does not have, is a
    ValueError here rather than a null or a dropped value in the Parquet file."""
    names = _METADATA_COLUMNS
    if len(columns) != len(names) or not all(name in columns for name in names):
        missing = [n for n in names if n not in columns]
        unknown = [n for n in columns if n not in names]
        raise ValueError(f"a metadata row must have exactly METADATA_SCHEMA's columns; missing {missing}, "
                         f"unknown {unknown}")
    return {name: columns[name] for name in names}


def table_prefix(root: str, name: str) -> str:
    return join(root, name, name)


def table_path(root: str, name: str) -> str:
    """The one Parquet file of table `name` ("metadata" or "errors") under ROOT."""
    return table_prefix(root, name) + "-00000-of-00001.parquet"


def table_files(root: str, name: str, pattern: str = "*.parquet") -> list[str]:
    """The Parquet files of table `name` under ROOT matching `pattern` (default: the batch file and every
    streaming window file; staging and Beam's temporary folders are never matched)."""
    return [m.path for m in FileSystems.match([join(root, name, pattern)])[0].metadata_list]


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file, through Beam's FileSystems (local, gs://, s3://)."""
    with FileSystems.open(path) as f:
        return pq.read_table(pa.BufferReader(f.read()), columns=columns)


def read_table(root: str, name: str, columns: list[str] | None = None) -> pa.Table:
    """Read a table (its one batch file) back."""
    return read_parquet(table_path(root, name), columns)


def commit(staged: str, *, root: str, name: str) -> str:
    """Rename the finished file `staged` over table `name`'s fixed path, then remove its staging folder."""
    final = table_path(root, name)
    FileSystems.rename([staged], [final])
    staging = staged.rsplit("/", 1)[0]
    if FileSystems.exists(staging):  # a local folder; object stores have no empty folders
        FileSystems.delete([staging])
    return final


class WriteTable(beam.PTransform):
    """Write rows (dicts) as the single Parquet file of table `name` under ROOT, committed in one rename
    once every row is written (see the module docstring). Returns the table's path, once committed."""

    def __init__(self, *, root: str, name: str, schema: pa.Schema):
        super().__init__()
        self._root = root
        self._name = name
        self._schema = schema
        self._staging = join(root, name, f"_staging-{uuid.uuid4().hex}")

    def expand(self, rows):
        staged = rows | "WriteToParquet" >> WriteToParquet(
            FileSystems.join(self._staging, self._name), self._schema, file_name_suffix=".parquet",
            num_shards=1, shard_name_template="-SSSSS-of-NNNNN")
        return staged | "Commit" >> beam.Map(commit, root=self._root, name=self._name)
