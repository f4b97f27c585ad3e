"""Streaming: each file recorded once, across redelivered notifications and restarted jobs.

Pub/Sub delivers every notification at least once, and a streaming job can be stopped at any moment:
the DirectRunner acknowledges messages as soon as it pulls them, and a cancelled Dataflow job drops
what it had in flight. The streaming tables are append-only window files, so a file processed twice
would be recorded twice, and a file whose message was acknowledged but whose rows were never written
would be lost. Three parts make a restarted job record every file exactly once:

1. **Catch-up** (`gazecrop.pipeline.stream`, `--catch_up`): at start the job also lists `--input_prefix` once,
   so files whose notifications an earlier run took but never recorded are found again.
2. **`SkipRecorded`**: each worker loads, at start, the identities (URI, size, modification time) of
   the files the tables under ROOT already record: every `ROOT/metadata/*.parquet` (the batch table
   and all window files) and, from `ROOT/errors/*.parquet`, the files that failed to decode after their
   last change (a decode failure is a property of the bytes; read, inference and write failures are
   retried). Files recorded there are dropped.
3. **`FirstDelivery`**: within the job, only the first delivery of a file identity passes (a stateful
   DoFn keyed by a hash bucket of it; an identity is forgotten `REMEMBER_SECS` after its first delivery,
   in event time). It drops redelivered notifications and the files that both the catch-up listing and a
   notification bring.

A file overwritten with new content has a new identity and is recorded again (its crops replaced).
Unlike the nightly `--incremental` job, a streaming job does not redo files recorded by another model
or other crop settings: it records each arriving file once; the nightly job brings old rows up to date.

Cost: the index holds one (URI, size, time) tuple per recorded file, loaded once per worker process when
the job starts: 282 bytes per file for 60-character URIs (tracemalloc, 100,000 entries), so 280 MB for a
million recorded files.
"""

from __future__ import annotations

import logging
import threading
import uuid
import zlib

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Timestamp

from gazecrop.transforms.metadata import read_parquet, table_files
from gazecrop.transforms.read import MatchedFile
from gazecrop.records import to_epoch_us

_LOGGER = logging.getLogger(__name__)

# How long a worker remembers a file identity it let through (redeliveries come within Pub/Sub's
# acknowledgement deadline and retention: minutes to days; later ones are still caught by a restarted
# job's SkipRecorded).
REMEMBER_SECS = 7 * 24 * 3600
# Keys of FirstDelivery's state (see `_FirstDeliveryFn`).
BUCKETS = 256

FileIdentity = tuple[str, int, int]  # (uri, size in bytes, modified µs)


def identity(file: MatchedFile) -> FileIdentity:
    return file.uri, file.size_in_bytes, file.modified_us


def load_recorded(root: str) -> tuple[set[FileIdentity], dict[str, int]]:
    """What the tables under ROOT record: the identities of files with metadata rows, and for each URI
    with a decode error row, the time (µs) of its latest one."""
    recorded: set[FileIdentity] = set()
    for path in table_files(root, "metadata"):
        table = read_parquet(path, ["source_uri", "source_size", "source_modified"])
        for uri, size, modified in zip(*(table.column(i).to_pylist() for i in range(3))):
            recorded.add((uri, size, to_epoch_us(modified)))
    failed: dict[str, int] = {}
    for path in table_files(root, "errors"):
        table = read_parquet(path, ["source_uri", "stage", "processed_at"])
        for uri, stage, at in zip(*(table.column(i).to_pylist() for i in range(3))):
            if stage == "decode":
                failed[uri] = max(failed.get(uri, 0), to_epoch_us(at))
    return recorded, failed


# The index of the job this process last loaded one for: (job token, load_recorded's result).
_INDEX: tuple[str, tuple[set[FileIdentity], dict[str, int]]] | None = None
_INDEX_LOCK = threading.Lock()


def _job_index(token: str, root: str) -> tuple[set[FileIdentity], dict[str, int]]:
    """`load_recorded(root)`, once per process and job. The DirectRunner makes a new DoFn and calls its
    `setup` for every bundle, which re-read every table file each time: a streaming job slowed as its
    window files piled up (10 % of its time at 2,000 images)."""
    global _INDEX
    with _INDEX_LOCK:
        if _INDEX is None or _INDEX[0] != token:
            recorded, failed = load_recorded(root)
            _LOGGER.info("%d files already recorded under %s, %d failed to decode", len(recorded), root,
                         len(failed))
            _INDEX = token, (recorded, failed)
        return _INDEX[1]


class _SkipRecordedFn(beam.DoFn):
    def __init__(self, root: str):
        self._root = root
        self._token = uuid.uuid4().hex  # one per pipeline; travels with the pickled DoFn
        self._skipped = beam.metrics.Metrics.counter("gazecrop", "inputs_already_recorded")
        self._recorded: set[FileIdentity] = set()
        self._failed: dict[str, int] = {}

    def setup(self):
        self._recorded, self._failed = _job_index(self._token, self._root)

    def process(self, file: MatchedFile):
        # A file whose modification time is unknown (0) is never taken as recorded, as in `is_done`.
        failed_at = self._failed.get(file.uri, 0)
        if file.modified_us and (identity(file) in self._recorded or failed_at >= file.modified_us):
            self._skipped.inc()
            return
        yield file


class SkipRecorded(beam.PTransform):
    """Drop the `MatchedFile`s the tables under `root` already record (see the module docstring)."""

    def __init__(self, *, root: str):
        super().__init__()
        self._root = root

    def expand(self, files):
        return files | "Skip" >> beam.ParDo(_SkipRecordedFn(self._root))


class _FirstDeliveryFn(beam.DoFn):
    """Keyed by a bucket of file identities: the first element of an identity passes, later ones are
    dropped and counted.

    A bucket's state maps each identity it has let through to the time it may be forgotten:
    `remember_secs` after the element's time, or after now if that is later, in whole milliseconds
    (runners keep timers to the millisecond: a µs time made the timer fire just before it, forever).
    One timer per bucket, set when the bucket gets its first entry and then to the earliest remaining
    time, drops the expired ones. Buckets rather than one key per identity: the DirectRunner walks every
    key's state on each pass of its watermark monitor (`watermark_manager.extract_transform_timers`),
    so a key per file slowed a streaming job as it saw more files. The timer is an event-time timer, not a
    processing-time one: on portable runners (Flink, Dataflow) a processing-time timer holds the
    watermark at its element's time until it fires, so no window after it would close for
    `remember_secs` (seen on Flink: no table file was ever written).
    """

    SEEN = userstate.ReadModifyWriteStateSpec("seen", PickleCoder())
    FORGET = userstate.TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, remember_secs: float):
        self._remember_ms = int(remember_secs * 1000)
        self._duplicates = beam.metrics.Metrics.counter("gazecrop", "inputs_duplicate")

    def process(self, keyed, timestamp=beam.DoFn.TimestampParam, seen=beam.DoFn.StateParam(SEEN),
                forget=beam.DoFn.TimerParam(FORGET)):
        _, file = keyed
        key = identity(file)
        expiries: dict[FileIdentity, int] = seen.read() or {}
        if key in expiries:
            self._duplicates.inc()
            _LOGGER.info("Dropping a second delivery of %s", file.uri)
            return
        expire_ms = max(timestamp.micros, Timestamp.now().micros) // 1000 + 1 + self._remember_ms
        if not expiries:  # otherwise the timer is set (an entry may be dropped a little late: harmless)
            forget.set(Timestamp(micros=expire_ms * 1000))
        expiries[key] = expire_ms
        seen.write(expiries)
        yield file

    @userstate.on_timer(FORGET)
    def forget(self, fired=beam.DoFn.TimestampParam, seen=beam.DoFn.StateParam(SEEN),
               forget=beam.DoFn.TimerParam(FORGET)):
        kept = {key: ms for key, ms in (seen.read() or {}).items() if ms * 1000 > fired.micros}
        if kept:
            seen.write(kept)
            forget.set(Timestamp(micros=min(kept.values()) * 1000))
        else:
            seen.clear()


def bucket(file: MatchedFile, buckets: int) -> int:
    """A stable (same on every worker and run) bucket of the file's identity."""
    return zlib.crc32("\n".join(map(str, identity(file))).encode()) % buckets


class FirstDelivery(beam.PTransform):
    """Pass the first `MatchedFile` of each identity (URI, size, modified), drop later ones.

    Identities are spread over `buckets` keys. Each element reads and writes its bucket's map, so the
    work per element grows with the files seen in `remember_secs` divided by `buckets` (20,000 files:
    ~80 entries per bucket).
    """

    def __init__(self, *, remember_secs: float = REMEMBER_SECS, buckets: int = BUCKETS):
        super().__init__()
        self._remember_secs = remember_secs
        self._buckets = buckets

    def expand(self, files):
        buckets = self._buckets
        return (files
                | "ByBucket" >> beam.Map(lambda f: (bucket(f, buckets), f)).with_output_types(
                    tuple[int, MatchedFile])
                | "First" >> beam.ParDo(_FirstDeliveryFn(self._remember_secs)))
