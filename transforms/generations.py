"""Object generations: which version of a gs:// object a matched file is.

A GCS object's `generation` is new whenever its content is written (an upload, a copy or compose onto
its name, a restore) and only then. Its `updated` time has millisecond precision (two same-size uploads
within one millisecond list alike) and also moves on metadata-only changes. So the generation, not the
time, says that an object is the very one a row was made from: every metadata row records it
(`source_generation`) and `--incremental` compares it (`gazecrop.transforms.incremental.is_done`).

Beam's `FileSystems.match` reports a path, a size and an update time only: its GCS listing
(`apache_beam.io.gcp.gcsio.GcsIO.list_files`) drops the generation that the JSON API's `objects.list`
returns with every object. `ListGenerations` lists the matched gs:// files again, per bundle: one
`objects.list` request (one page per 1,000 objects) per directory of the bundle's files, for the
longest name prefix those files share in it and not below it (`delimiter="/"`), never a request per
file. A file that listing no longer shows (deleted meanwhile), or one whose listing failed (logged and
counted), keeps an unknown generation (""), which never counts as unchanged: it is processed again.

The listing comes after the match, so an object rewritten in between is recorded with the size and
time of one version and the generation of a later one (and the bytes of the version read): such a row
matches no later listing, so the next run crops the file again. A row never claims a newer version
than it was made from.

Files that already carry a generation (from a GCS notification, `gazecrop.transforms.stream`) and files of other
schemes pass through untouched: local files have none (their size and modification time, or
`--incremental_check=content`, tell their versions apart), nor do s3:// objects here.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from gazecrop.transforms.read import MatchedFile

_LOGGER = logging.getLogger(__name__)

GCS = "gs://"

# Most gs:// files `_ListGenerationsFn` holds before it lists them (bounds its memory on a big bundle).
MAX_PENDING = 5_000


def has_generations(uri: str) -> bool:
    """Whether the store of `uri` versions its objects with a generation (gs://)."""
    return uri.startswith(GCS)


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/name` as `(bucket, name)`."""
    bucket, _, name = uri[len(GCS):].partition("/")
    return bucket, name


def listing_prefixes(names: Iterable[str]) -> dict[str, str]:
    """For object names of one bucket: `{prefix: directory}`, one prefix per directory, the longest
    that all the names in that directory share (what one `objects.list` with `delimiter="/"` needs)."""
    by_directory: dict[str, list[str]] = {}
    for name in names:
        by_directory.setdefault(name[:name.rfind("/") + 1], []).append(name)
    return {posixpath.commonprefix(members): directory for directory, members in by_directory.items()}


def list_generations(client, bucket: str, names: Iterable[str]) -> dict[str, str]:
    """`{name: generation}` of the objects `names` of `bucket` that exist now, from one listing per
    directory (`client`: a `google.cloud.storage.Client`). A directory whose listing fails after the
    client's retries (an API error, or the connection: OSError) is logged and counted, and left out:
    its files' generations stay unknown, so they are processed, and the read stage reports what fails."""
    from google.api_core.exceptions import GoogleAPICallError
    wanted = set(names)
    found: dict[str, str] = {}
    for prefix in listing_prefixes(wanted):
        try:
            blobs = client.list_blobs(bucket, prefix=prefix, delimiter="/",
                                      fields="items(name,generation),nextPageToken")
            found.update({blob.name: str(blob.generation) for blob in blobs if blob.name in wanted})
        except (GoogleAPICallError, OSError) as e:
            beam.metrics.Metrics.counter("gazecrop", "generation_listings_failed").inc()
            _LOGGER.warning("Could not list the generations of gs://%s/%s* (those files will be processed "
                            "as changed): %s", bucket, prefix, e)
    return found


class _ListGenerationsFn(beam.DoFn):
    """MatchedFile to MatchedFile with its gs:// generation; gs:// files without one wait until the end
    of the bundle (or MAX_PENDING of them) and are listed together, each kept in its own window and
    time."""

    def __init__(self, max_pending: int = MAX_PENDING):
        self._max_pending = max_pending
        self._client = None
        self._pending: list[WindowedValue] = []

    def _gcs_client(self):
        """Beam's own GCS client (its credentials; STORAGE_EMULATOR_HOST honoured), made on first use, so
        that a job without gs:// inputs never looks for Google credentials."""
        if self._client is None:
            from apache_beam.io.gcp import gcsio
            self._client = gcsio.GcsIO().client
        return self._client

    def start_bundle(self):
        self._pending = []

    def process(self, file: MatchedFile, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        if file.generation or not has_generations(file.uri):
            yield file
            return
        self._pending.append(WindowedValue(file, timestamp, (window,)))
        if len(self._pending) >= self._max_pending:
            yield from self._flush()

    def finish_bundle(self):
        yield from self._flush()

    def _flush(self):
        pending, self._pending = self._pending, []
        if not pending:
            return
        by_bucket: dict[str, list[str]] = {}
        for item in pending:
            bucket, name = split_gcs_uri(item.value.uri)
            by_bucket.setdefault(bucket, []).append(name)
        generations = {f"{GCS}{bucket}/{name}": generation
                       for bucket, names in by_bucket.items()
                       for name, generation in list_generations(self._gcs_client(), bucket, names).items()}
        for item in pending:
            yield item.with_value(item.value._replace(generation=generations.get(item.value.uri, "")))


class ListGenerations(beam.PTransform):
    """Give each gs:// `MatchedFile` the generation its object has now (see the module docstring);
    other files pass through unchanged."""

    def expand(self, files):
        return files | "List" >> beam.ParDo(_ListGenerationsFn())
