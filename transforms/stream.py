"""Streaming input and output: storage notifications and file drops in, windowed Parquet tables out.

**Inputs.** A streaming job never lists its whole input; files arrive one by one:

* `ReadNotifications`: GCS object notifications on a Pub/Sub subscription (`gcloud storage buckets
  notifications create gs://BUCKET --topic=T --event-types=OBJECT_FINALIZE --payload-format=json`).
  A message's attributes are `bucketId`, `objectId`, `eventType`, `objectGeneration`, ...; its data is
  the object's JSON resource (`name`, `bucket`, `size` as a decimal string, `updated` as RFC 3339).
  `OBJECT_FINALIZE` (a new object, or a new generation of one) is cropped; every other event type
  (`OBJECT_DELETE`, `OBJECT_ARCHIVE`, `OBJECT_METADATA_UPDATE`) and every object outside the input
  prefix or inside the output root (the job's own crops must not feed it again) is ignored, logged and
  counted. A message that is not a readable notification becomes one error row at stage `read`.
* `MatchNewFiles`: Beam's `fileio.MatchContinuously` over a glob, polled every `interval` seconds;
  each file is emitted once, when first seen.

Each becomes a `gazecrop.transforms.read.MatchedFile` whose relpath is the object name relative to the input
root (the prefix, or the glob's directory before its first wildcard), named by
`gazecrop.paths.output_relpath` as in batch runs (so a catch-up listing and a notification name one
object alike, and names that collide only on a case-insensitive store are told apart); with no prefix, a
notification's relpath is `<bucket>/<object name>`. An object uploaded again replaces its crops.

**Tables.** `WriteToParquet` needs bounded input, so a streaming job writes each table per fixed
window with `fileio.WriteToFiles` and `ParquetSink`. A row's window is that of its `processed_at` (when
the row was made): the batching steps (RunInference's and the crop search's BatchElements) emit batches
stamped at the end of the global window or at a timer's time, so the input's own timestamps do not
survive to the tables, and a row made now must land in a window that closes soon:

    ROOT/metadata/stream-<window start>-<window end>-<run id>-<shard>-of-<shards>.parquet
    ROOT/errors/stream-<window start>-<window end>-<run id>-<shard>-of-<shards>.parquet

Window bounds are UTC, `YYYYMMDDTHHMMSSZ` (no `:`, which some filesystems refuse); the run id (UTC start
time and 6 random hex digits) keeps a restarted job from replacing an earlier job's file of the same
window. The `stream-` prefix never equals a batch table's fixed name (`metadata-00000-of-00001.parquet`),
so a batch run and a streaming job may share ROOT; a reader globs `ROOT/metadata/*.parquet`. A window
with no rows writes no file. Files are written to a temporary directory under the table folder
(`.temp<uuid>/`) and moved into place by WriteToFiles.

**Counters** (namespace `gazecrop`): `inputs_seen`, `inputs_ignored`, `error_rows`, `metadata_rows`,
`<table>_rows_flushed`, `<table>_files_flushed` and `<table>_files_written`, with the batch stages' own
(`files_read`, `images_cropped`, ...). Every input seen ends as ignored, cropped or one error row.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
import secrets
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.transforms import window

from gazecrop.paths import is_run_output, output_relpath
from gazecrop.transforms.read import MatchedFile, absolute_uri, glob_regex, pattern_root, relative_path
from gazecrop.records import error_row, seconds_to_epoch_us, to_epoch_us
from gazecrop.transforms.write import join

_LOGGER = logging.getLogger(__name__)

NAMESPACE = "gazecrop"
FINALIZE = "OBJECT_FINALIZE"
SUBSCRIPTION_RE = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")


def _counter(name: str):
    return beam.metrics.Metrics.counter(NAMESPACE, name)


# ----------------------------------------------------------------------------------------------
# GCS notifications
# ----------------------------------------------------------------------------------------------

class MalformedNotificationError(ValueError):
    """A Pub/Sub message that is not a readable GCS object notification."""


class Notification(NamedTuple):
    """What a GCS notification says about an object."""
    event_type: str
    bucket: str
    name: str
    size_in_bytes: int | None  # None: the notification carries no payload (--payload-format=none)
    modified_us: int  # the object's `updated` time, microseconds since the epoch (0: unknown)
    generation: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def _rfc3339_us(text: str) -> int:
    """`2026-11-27T17:30:00.123Z` as microseconds since the epoch."""
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return to_epoch_us(parsed)


def parse_notification(data: bytes | None, attributes: dict[str, str] | None) -> Notification:
    """The notification in a Pub/Sub message; MalformedNotificationError if it is none.

    The attributes name the event and the object; the JSON payload (absent with
    `--payload-format=none`) adds size and update time and must agree with the attributes.
    """
    attributes = dict(attributes or {})
    event_type = attributes.get("eventType")
    if not event_type:
        raise MalformedNotificationError("message has no eventType attribute; not a GCS notification")
    payload: dict[str, Any] = {}
    if data:
        try:
            payload = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MalformedNotificationError(f"payload is not JSON: {e}") from e
        if not isinstance(payload, dict):
            raise MalformedNotificationError(f"payload is a JSON {type(payload).__name__}, not an object")
    bucket = attributes.get("bucketId") or payload.get("bucket")
    name = attributes.get("objectId") or payload.get("name")
    if not isinstance(bucket, str) or not bucket or not isinstance(name, str) or not name:
        raise MalformedNotificationError("notification names no bucket and object (bucketId/objectId "
                                         "attributes or bucket/name in the payload)")
    for key, value in (("bucket", bucket), ("name", name)):
        if key in payload and payload[key] != value:
            raise MalformedNotificationError(f"payload {key} {payload[key]!r} differs from the attributes' "
                                             f"{value!r}")
    size = None
    if "size" in payload:
        try:
            size = int(payload["size"])
        except (TypeError, ValueError) as e:
            raise MalformedNotificationError(f"payload size {payload['size']!r} is not an integer") from e
        if size < 0:
            raise MalformedNotificationError(f"payload size {size} is negative")
    updated = 0
    if payload.get("updated"):
        try:
            updated = _rfc3339_us(str(payload["updated"]))
        except ValueError as e:
            raise MalformedNotificationError(f"payload updated {payload['updated']!r} is not RFC 3339") from e
    return Notification(event_type=event_type, bucket=bucket, name=name, size_in_bytes=size,
                        modified_us=updated,
                        generation=str(attributes.get("objectGeneration") or payload.get("generation") or ""))


def notification_source(message: Any, subscription: str) -> str:
    """The errors table's source_uri for a message: the object it names if it names one, else the
    message itself (`pubsub://projects/P/subscriptions/S#<message id>`)."""
    attributes = getattr(message, "attributes", None) or {}
    if attributes.get("bucketId") and attributes.get("objectId"):
        return f"gs://{attributes['bucketId']}/{attributes['objectId']}"
    return f"pubsub://{subscription}#{getattr(message, 'message_id', None) or 'unknown'}"


def notification_to_file(notification: Notification, *, input_prefix: str | None,
                         output_root: str) -> MatchedFile | None:
    """The file to crop, or None when the notification is to be ignored (not OBJECT_FINALIZE, outside
    the input prefix, or inside the output root)."""
    uri = notification.uri
    if notification.event_type != FINALIZE:
        return None
    if input_prefix and not uri.startswith(input_prefix):
        return None
    if uri.startswith(output_root.rstrip("/") + "/"):
        return None
    relpath = uri[len(input_prefix):] if input_prefix else f"{notification.bucket}/{notification.name}"
    return MatchedFile(uri=uri, relpath=output_relpath(uri, relpath), size_in_bytes=notification.size_in_bytes,
                       modified_us=notification.modified_us, generation=notification.generation)


class _ParseNotificationsFn(beam.DoFn):
    """PubsubMessage to MatchedFile; ignored events are counted and logged, malformed messages become
    error rows (tagged output `errors`), never exceptions."""

    ERRORS = "errors"

    def __init__(self, *, subscription: str, input_prefix: str | None, output_root: str):
        self._subscription = subscription
        self._input_prefix = input_prefix
        self._output_root = output_root
        self._seen = _counter("inputs_seen")
        self._ignored = _counter("inputs_ignored")
        self._malformed = _counter("notifications_malformed")

    def process(self, message):
        self._seen.inc()
        try:
            notification = parse_notification(getattr(message, "data", None),
                                               getattr(message, "attributes", None))
            matched = notification_to_file(notification, input_prefix=self._input_prefix,
                                           output_root=self._output_root)
        except Exception as e:  # noqa: BLE001 (a bad message must never stop the job)
            self._malformed.inc()
            source = notification_source(message, self._subscription)
            _LOGGER.warning("Malformed notification %s: %s", source, e)
            yield beam.pvalue.TaggedOutput(self.ERRORS, error_row(source, "read", type(e).__name__, str(e)))
            return
        if matched is None:
            self._ignored.inc()
            _LOGGER.info("Ignoring %s notification for %s", notification.event_type, notification.uri)
            return
        yield matched


class ReadNotifications(beam.PTransform):
    """GCS object notifications from a Pub/Sub subscription to `(matched_files, error_rows)`.

    Args:
      subscription: `projects/P/subscriptions/S` (with PUBSUB_EMULATOR_HOST set, on the emulator).
      input_prefix: only objects under this `gs://bucket/prefix/` are cropped, named relative to it;
        None: every object of the notifying buckets, named `<bucket>/<object name>`.
      output_root: objects under it are ignored (the job's own outputs).
    """

    def __init__(self, *, subscription: str, input_prefix: str | None, output_root: str):
        super().__init__()
        if not SUBSCRIPTION_RE.match(subscription):
            raise ValueError(f"subscription must be projects/P/subscriptions/S. Received: {subscription!r}")
        self._subscription = subscription
        self._input_prefix = input_prefix
        self._output_root = output_root

    def expand(self, pbegin):
        parsed = (
            pbegin
            | "ReadFromPubSub" >> beam.io.ReadFromPubSub(subscription=self._subscription, with_attributes=True)
            | "Parse" >> beam.ParDo(_ParseNotificationsFn(
                subscription=self._subscription, input_prefix=self._input_prefix,
                output_root=self._output_root)).with_outputs(_ParseNotificationsFn.ERRORS, main="files"))
        return parsed.files, parsed[_ParseNotificationsFn.ERRORS]


# ----------------------------------------------------------------------------------------------
# File drops
# ----------------------------------------------------------------------------------------------

def matched_file(metadata, root: str) -> MatchedFile:
    """A FileMetadata of MatchContinuously as a MatchedFile named relative to `root`."""
    return MatchedFile(uri=metadata.path, relpath=output_relpath(metadata.path, relative_path(metadata.path, [root])),
                       size_in_bytes=metadata.size_in_bytes,
                       modified_us=seconds_to_epoch_us(metadata.last_updated_in_seconds))


class MatchNewFiles(beam.PTransform):
    """Files appearing under a glob (`fileio.MatchContinuously` lists the pattern's root every `interval`
    seconds; names are matched by `gazecrop.transforms.read.glob_regex`, as in batch runs), each once, leaving
    out what the run writes under `output_root`. Returns matched files (no error rows: a poll that
    fails is retried by the runner)."""

    def __init__(self, *, pattern: str, interval: float, output_root: str):
        super().__init__()
        self._pattern = absolute_uri(pattern)
        self._interval = interval
        self._output_root = absolute_uri(output_root)

    def expand(self, pbegin):
        seen = _counter("inputs_seen")

        def counted(metadata):
            seen.inc()
            return metadata

        regex, output_root = glob_regex(self._pattern), self._output_root
        return (
            pbegin
            | "MatchContinuously" >> fileio.MatchContinuously(pattern_root(self._pattern) + "**",
                                                                 interval=self._interval)
            | "Files" >> beam.Filter(lambda m: regex.fullmatch(m.path) is not None
                                     and not is_run_output(m.path, output_root))
            | "Count" >> beam.Map(counted)
            | "Name" >> beam.Map(matched_file, pattern_root(self._pattern)))


# ----------------------------------------------------------------------------------------------
# Windowed Parquet tables
# ----------------------------------------------------------------------------------------------

def new_run_id(now: datetime.datetime | None = None) -> str:
    """`<UTC start time>-<6 random hex>`, e.g. `20261127T173000Z-3fa9c1`."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _utc(ts) -> str:
    return ts.to_utc_datetime().strftime("%Y%m%dT%H%M%SZ")


class WindowFileNaming:
    """`fileio.WriteToFiles` naming: `stream-<start>-<end>-<run id>-<shard>-of-<shards>.parquet`."""

    def __init__(self, run_id: str):
        self._run_id = run_id

    def __call__(self, window_, pane, shard_index, total_shards, compression, destination) -> str:
        if isinstance(window_, window.GlobalWindow):
            bounds = "global"
        else:
            bounds = f"{_utc(window_.start)}-{_utc(window_.end)}"
        return (f"stream-{bounds}-{self._run_id}-{int(shard_index or 0):05d}-of-"
                f"{int(total_shards or 1):05d}.parquet")


class ParquetSink(fileio.FileSink):
    """A `fileio.FileSink` that writes its rows (dicts) as one Parquet file with `schema`.

    Rows are held until `flush` (a window's rows per file: a few thousand small dicts), then written
    as one table, so the file is a complete Parquet file or nothing.
    """

    def __init__(self, schema: pa.Schema, table: str):
        self._schema = schema
        self._table = table
        self._rows: list[dict] = []
        self._fh = None

    def open(self, fh) -> None:
        self._fh = fh
        self._rows = []

    def write(self, record) -> None:
        self._rows.append(record)

    def flush(self) -> None:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self._rows, schema=self._schema), buffer)
        self._fh.write(buffer.getvalue())
        _counter(f"{self._table}_rows_flushed").inc(len(self._rows))
        _counter(f"{self._table}_files_flushed").inc()
        self._rows = []


class _SinkFactory:
    """`WriteToFiles(sink=...)` builds a sink per destination; a FileSink instance would be rebuilt
    without its arguments, so pass this callable."""

    def __init__(self, schema: pa.Schema, table: str):
        self._schema = schema
        self._table = table

    def __call__(self, destination) -> ParquetSink:
        return ParquetSink(self._schema, self._table)


def stamp_processed_at(row: dict) -> window.TimestampedValue:
    """The row, timestamped at its `processed_at` (module docstring: Tables)."""
    return window.TimestampedValue(row, row["processed_at"].timestamp())


class WriteWindowedTable(beam.PTransform):
    """Rows to `ROOT/<name>/stream-<window>-<run id>-<shard>-of-<shards>.parquet`, one file per fixed
    window of `window_seconds` (module docstring). Returns WriteToFiles' file results."""

    def __init__(self, *, root: str, name: str, schema: pa.Schema, window_seconds: float, run_id: str):
        super().__init__()
        self._root = root
        self._name = name
        self._schema = schema
        self._window_seconds = window_seconds
        self._run_id = run_id

    def expand(self, rows):
        written = _counter(f"{self._name}_files_written")

        def count(result):
            written.inc()
            return result

        return (
            rows
            | "StampProcessedAt" >> beam.Map(stamp_processed_at)
            | "Window" >> beam.WindowInto(window.FixedWindows(self._window_seconds))
            | "WriteToFiles" >> fileio.WriteToFiles(
                path=join(self._root, self._name), file_naming=WindowFileNaming(self._run_id),
                sink=_SinkFactory(self._schema, self._name), shards=1)
            | "Count" >> beam.Map(count))


def count_rows(rows, name: str, label: str):
    """Pass rows through, counting them as counter `name`."""
    counter = _counter(name)

    def counted(row):
        counter.inc()
        return row

    return rows | label >> beam.Map(counted)
