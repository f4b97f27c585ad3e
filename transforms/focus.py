"""Focus tables (--focus): a region per source that every crop of it must contain, read from CSV or Parquet
through Beam's ``FileSystems`` (local, gs://, s3://) while the job is built."""

from __future__ import annotations

import dataclasses
import math

from gazecrop.search import Focus


class FocusTableError(ValueError):
    """A --focus table that cannot be used as it is: the message names the file, the row where there is
    one, and what was expected. Raised while the job is built, so a bad table stops a run before any
    work."""


@dataclasses.dataclass(frozen=True)
class FocusRow:
    """One row of a focus table: its key as written, its region, and where it is (for messages)."""
    key: str
    focus: Focus
    where: str  # "focus.csv row 3": a CSV's line number (header = 1), a Parquet table's row from 1


FOCUS_VALUE_COLUMNS = ("x", "y", "width", "height")


def read_focus_rows(uri: str, key: str = "source") -> list[FocusRow]:
    """The rows of a focus table, CSV (UTF-8) or Parquet (by extension), read through Beam's
    ``FileSystems`` (local, gs://, s3://).

    Columns: ``key`` (default ``source``: the source URI, or its path relative to an input root), ``x``,
    ``y`` and optionally ``width``, ``height``: finite numbers >= 0, in source pixels after EXIF
    orientation (empty or absent width/height = a point). A region past the picture's edge is clamped to
    the picture when crops are chosen. Raises ``FocusTableError`` naming the file (and the row) for a file
    that is not UTF-8 CSV or Parquet, a missing column, a Parquet column of the wrong type, a value that
    is not a finite number >= 0, and two rows with the same key.
    """
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(uri, compression_type="uncompressed") as f:
        data = f.read()
    if uri.lower().endswith(".parquet"):
        records = _parquet_records(uri, data, key)
    else:
        records = _csv_records(uri, data, key)
    rows = [FocusRow(key=str(record[key]), focus=_focus_of_record(record, f"{uri} row {n}", key),
                     where=f"{uri} row {n}") for n, record in records]
    refuse_duplicate_keys((row.key, row) for row in rows)
    return rows


def read_focus_table(uri: str, key: str = "source") -> dict:
    """A focus table as ``{key value: Focus}`` (``read_focus_rows``; every key once)."""
    return {row.key: row.focus for row in read_focus_rows(uri, key)}


def refuse_duplicate_keys(keyed_rows) -> None:
    """Raise ``FocusTableError`` naming both rows when two ``(key, FocusRow)`` pairs share a key."""
    first: dict = {}
    for name, row in keyed_rows:
        if name in first:
            raise FocusTableError(f"focus table rows name one image twice: {first[name].where} "
                                  f"({first[name].key!r}) and {row.where} ({row.key!r}) both name {name}; "
                                  f"keep one row per image")
        first[name] = row


def _expected_columns(key: str) -> str:
    return f"columns {key}, x, y and optionally width, height"


def _csv_records(uri: str, data: bytes, key: str) -> list[tuple[int, dict]]:
    """(line number, row dict) of a UTF-8 CSV file (a byte-order mark is allowed)."""
    import csv
    import io

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise FocusTableError(f"focus table {uri} line {line} is not UTF-8 text (byte {data[e.start]:#04x} at "
                              f"offset {e.start}): save the CSV as UTF-8. Received: "
                              f"{data[max(0, e.start - 20):e.start + 20]!r}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = reader.fieldnames or []
        missing = [c for c in (key, "x", "y") if c not in columns]
        if missing:
            raise FocusTableError(f"focus table {uri} lacks column(s) {', '.join(missing)}: expected "
                                  f"{_expected_columns(key)} in its first line. Received: columns {columns}")
        return [(reader.line_num, row) for row in reader]
    except csv.Error as e:
        raise FocusTableError(f"focus table {uri} line {reader.line_num} is not CSV: {e}") from None


def _parquet_records(uri: str, data: bytes, key: str) -> list[tuple[int, dict]]:
    """(row number from 1, row dict) of a Parquet table whose key column holds text and whose value
    columns hold numbers."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as e:
        raise FocusTableError(f"focus table {uri} is not a Parquet file ({e}): expected a .parquet table "
                              f"with {_expected_columns(key)}, or a .csv file") from None
    types = {field.name: field.type for field in table.schema}
    missing = [c for c in (key, "x", "y") if c not in types]
    if missing:
        raise FocusTableError(f"focus table {uri} lacks column(s) {', '.join(missing)}: expected "
                              f"{_expected_columns(key)}. Received: columns {list(types)}")
    if not (pa.types.is_string(types[key]) or pa.types.is_large_string(types[key])):
        raise FocusTableError(f"focus table {uri}: column {key} is {types[key]}; expected text (string): "
                              f"source URIs or paths relative to an input root")
    for column in FOCUS_VALUE_COLUMNS:
        kind = types.get(column)
        if kind is not None and not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                     or pa.types.is_null(kind)):
            raise FocusTableError(f"focus table {uri}: column {column} is {kind}; expected numbers (integer "
                                  f"or floating point) of source pixels")
    return list(enumerate(table.to_pylist(), start=1))


def _focus_of_record(record: dict, where: str, key: str) -> Focus:
    """The region of one table row: x, y and optionally width, height, each a finite number >= 0."""
    missing = [c for c in (key, "x", "y") if record.get(c) in (None, "")]
    if missing:
        raise FocusTableError(f"focus table {where} lacks {', '.join(missing)}. Received: {record!r}")
    names = ["x", "y"]
    if any(record.get(c) not in (None, "") for c in ("width", "height")):
        names += ["width", "height"]
    values = []
    for name in names:
        raw = record.get(name)
        try:
            value = 0.0 if raw in (None, "") else float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise FocusTableError(f"focus table {where}: {name} must be a finite number >= 0 (source pixels). "
                                  f"Received: {name}={raw!r}")
        values.append(value)
    return Focus(*values)
