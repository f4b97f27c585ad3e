"""`gazecrop run --streaming`: crop images as they arrive, until the job is stopped.

```
Pub/Sub GCS notifications ─▶ ReadNotifications ─┐
 + --input_prefix, listed once at start (catch-up) ┤
   or  a glob, polled    ─▶ MatchNewFiles     ─┴▶ SkipRecorded ─▶ FirstDelivery ─▶ ReadMatchedFiles
      ─▶ crop_sources: DecodeImages ─▶ PredictSaliency ─▶ SelectCrops ─▶ WriteCrops
      ─▶ metadata rows ─▶ fixed windows
      ─▶ ROOT/metadata/stream-….parquet
   every stage's error rows ─────────────────────────▶ fixed windows ─▶ ROOT/errors/stream-….parquet
```

Exactly once across restarts (`gazecrop.transforms.recorded`): a file the tables under ROOT already record is
skipped, a file delivered twice in one job is taken once, and with --input_prefix the job lists the
prefix at start (`--catch_up`, on by default there), so a file whose notification a stopped job took
but never recorded is cropped by the next one. Stop and restart a job at any moment: each file ends
in the tables once.

The stages after the read are the batch job's own chain (`gazecrop.pipeline.compose.crop_sources`), so a
streamed image is cropped and described exactly as in a batch run; only the input and the tables differ
(one file per window: `gazecrop.transforms.stream`).
RunInference batches with `--max_batch_duration_secs`, so a lone image waits at most that long for a
batch. With `--watch_model_pattern`, the model handler swaps in the newest readout file matching the
pattern (`gazecrop.transforms.inference.ModelWatch`; why not RunInference's model side input: see
`DeepGazeModelHandler`); rows carry the new model's version from then on.

Runners: Beam's Python DirectRunner streams only with its bundle-based engine
(`BundleBasedDirectRunner`, the default here with --streaming; the FnApiRunner runs batch only) and, in
Beam 2.77, only from Pub/Sub: it cannot run splittable DoFns in streaming mode (MatchContinuously).
`check_runner` refuses that combination with the reason instead of failing later. Flink (`--runner
FlinkRunner`, see launch/flink.sh) runs `--streaming --input`; Python's Pub/Sub reader is Dataflow's
and the DirectRunner's only.

Stopping: `--streaming_duration_secs N` (tests, demos) or Ctrl-C stops taking new work, waits until
everything already received is written (crops and both tables; at most `--window_seconds` plus a
grace period, as the last window must close), then cancels the job and prints the summary from the
job's counters. On Dataflow, stop a job with `gcloud dataflow jobs drain`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from gazecrop.pipeline.compose import crop_sources
from gazecrop.pipeline.job import counters, focus_table
from gazecrop.pipeline.lock import root_lock
from gazecrop.pipeline.options import RunOptions
from gazecrop.transforms.generations import ListGenerations
from gazecrop.transforms.inference import DeepGazeModelHandler, ModelWatch, describe_model
from gazecrop.transforms.metadata import ERRORS_SCHEMA, METADATA_SCHEMA, read_parquet, table_files
from gazecrop.transforms.read import MatchImages, ReadMatchedFiles, absolute_uri
from gazecrop.transforms.recorded import FirstDelivery, SkipRecorded
from gazecrop.transforms.stream import (MatchNewFiles, ReadNotifications, WriteWindowedTable, count_rows,
                                        new_run_id)
from gazecrop.transforms.write import join

_LOGGER = logging.getLogger(__name__)

# Beam's Python DirectRunner and its engines (what check_runner judges; other local runners, e.g. a Flink
# with LOOPBACK workers, run what these cannot). In streaming, Beam 2.77's DirectRunner counts only the
# first bundle of each step on each of its threads: a thread caches the step's execution state together
# with the metrics container of the bundle it first ran (`statesampler.scoped_state`), and every later
# bundle gets a fresh container (`direct/executor.py`) that the counters never reach. So a streaming
# summary on it is read from the run's table files.
DIRECT_RUNNERS = ("directrunner", "bundlebaseddirectrunner", "switchingdirectrunner", "fnapirunner")


def _runner_name(pipeline_options: PipelineOptions) -> str:
    return str(pipeline_options.view_as(StandardOptions).runner or "").lower().rsplit(".", 1)[-1]


# Extra wait, beyond --window_seconds, for the last window's files when a run stops.
DRAIN_GRACE_SECS = 30.0


class UnsupportedOnRunnerError(ValueError):
    """The streaming job uses something the chosen runner cannot run."""


def check_runner(options: RunOptions, pipeline_options: PipelineOptions) -> None:
    """Refuse, before starting, a streaming job the local runner would hang on or fail to start."""
    runner = _runner_name(pipeline_options)
    if runner not in DIRECT_RUNNERS:
        return
    if runner == "fnapirunner":
        raise UnsupportedOnRunnerError(
            "--streaming needs a streaming runner; the FnApiRunner runs batch jobs only. Leave --runner out "
            "(BundleBasedDirectRunner) or name DataflowRunner")
    reasons = []
    if options.inputs:
        reasons.append("--streaming --input uses fileio.MatchContinuously, a splittable DoFn, which Beam "
                       "2.77's Python DirectRunner cannot run in streaming mode (RuntimeError: Transform node "
                       "...ProcessKeyedElements/GroupByKey/GroupByKey, _GroupByKeyOnly) was not replaced as "
                       "expected); use --input_subscription with GCS notifications, or DataflowRunner")
    if reasons:
        raise UnsupportedOnRunnerError("; ".join(reasons))


def build_streaming(p: beam.Pipeline, options: RunOptions, *, handler: DeepGazeModelHandler | None = None,
                    run_id: str | None = None):
    """Apply the streaming job to `p`. Returns `(metadata_rows, error_rows)` (before windowing)."""
    model_info = describe_model(options.model)
    watch = None
    if options.watch_model_pattern:
        watch = ModelWatch(pattern=options.watch_model_pattern, interval_secs=options.watch_model_interval_secs,
                           since=time.time())
    in_one_process = _runner_name(p.options) in DIRECT_RUNNERS  # streaming there runs in this process
    handler = handler or DeepGazeModelHandler(model_info, max_batch_size=options.batch_size,
                                              max_batch_duration_secs=options.max_batch_duration_secs,
                                              watch=watch, share_across_processes=not in_one_process)
    root = absolute_uri(options.output)
    run_id = run_id or new_run_id()
    focus = focus_table(options, [])
    crop_config, output = options.crop_config(), options.output_config()

    input_errors = []
    if options.input_subscription:
        matched, notification_errors = p | "ReadNotifications" >> ReadNotifications(
            subscription=options.input_subscription, input_prefix=options.input_prefix, output_root=root)
        input_errors.append(notification_errors)
        if options.catch_up and options.input_prefix:
            listed, list_errors = p | "CatchUp" >> CatchUp(prefix=options.input_prefix, output_root=root)
            matched = (matched, listed) | "NotifiedAndListed" >> beam.Flatten()
            input_errors.append(list_errors)
    else:
        matched = ([p | f"MatchNewFiles{i}" >> MatchNewFiles(pattern=pattern, interval=options.poll_interval_secs,
                                                                   output_root=root)
                    for i, pattern in enumerate(options.inputs)]
                   | "AllMatched" >> beam.Flatten())
    matched = (matched
               | "ListGenerations" >> ListGenerations()  # listed gs:// files; notified ones carry theirs
               | "SkipRecorded" >> SkipRecorded(root=root)
               | "FirstDelivery" >> FirstDelivery())
    sources, read_errors = matched | "ReadMatchedFiles" >> ReadMatchedFiles(max_input_bytes=options.max_input_bytes)
    cropped = crop_sources(sources, model_info=model_info, handler=handler, crop_config=crop_config, focus=focus,
                           output=output, max_megapixels=options.max_megapixels)
    errors = (*input_errors, read_errors, *cropped.errors) | "AllErrors" >> beam.Flatten()
    rows = count_rows(cropped.rows, "metadata_rows", "CountMetadataRows")
    errors = count_rows(errors, "error_rows", "CountErrorRows")
    _ = rows | "WriteMetadata" >> WriteWindowedTable(
        root=root, name="metadata", schema=METADATA_SCHEMA, window_seconds=options.window_seconds, run_id=run_id)
    _ = errors | "WriteErrors" >> WriteWindowedTable(
        root=root, name="errors", schema=ERRORS_SCHEMA, window_seconds=options.window_seconds, run_id=run_id)
    return rows, errors


class CatchUp(beam.PTransform):
    """Every file under `prefix`, listed once when the job starts (`MatchImages` of `<prefix>**`, so
    files are named relative to the prefix, as notifications name them), except the job's own outputs
    under `output_root`. Returns `(files, error_rows)`."""

    def __init__(self, *, prefix: str, output_root: str):
        super().__init__()
        self._prefix = prefix
        self._outputs = output_root.rstrip("/") + "/"

    def expand(self, pbegin):
        seen = beam.metrics.Metrics.counter("gazecrop", "inputs_seen")
        ignored = beam.metrics.Metrics.counter("gazecrop", "inputs_ignored")
        outputs = self._outputs

        def inputs_only(file):
            seen.inc()
            if file.uri.startswith(outputs):
                ignored.inc()
                return []
            # Listed now: the element's time is the listing's (a notification's is its publish time).
            return [beam.window.TimestampedValue(file, time.time())]

        files, errors = pbegin | "List" >> MatchImages(patterns=[self._prefix.rstrip("/") + "/**"],
                                                   output_root=self._outputs.rstrip("/"))
        return files | "InputsOnly" >> beam.FlatMap(inputs_only), errors


# ----------------------------------------------------------------------------------------------
# Running, stopping, summary
# ----------------------------------------------------------------------------------------------

def settled(c: dict[str, int]) -> bool:
    """Everything received so far is accounted for and in its table's files: every input seen is
    ignored, cropped or an error row; every row produced was flushed; every file flushed was moved."""
    accounted = (c.get("inputs_ignored", 0) + c.get("inputs_already_recorded", 0) + c.get("inputs_duplicate", 0)
                 + c.get("images_cropped", 0) + c.get("error_rows", 0))
    return (accounted >= c.get("inputs_seen", 0)
            and c.get("metadata_rows_flushed", 0) >= c.get("metadata_rows", 0)
            and c.get("errors_rows_flushed", 0) >= c.get("error_rows", 0)
            and c.get("metadata_files_written", 0) >= c.get("metadata_files_flushed", 0)
            and c.get("errors_files_written", 0) >= c.get("errors_files_flushed", 0))


def run_table_counts(root: str, run_id: str) -> dict[str, int]:
    """Counters recovered from this run's own table files (named with its run id), for runners that
    report no metrics for a cancelled streaming job (Flink's portable runner) or incomplete ones (the
    DirectRunner, see DIRECT_RUNNERS): images cropped, crops and error rows, and the files of each
    table."""
    counts: dict[str, int] = {}
    for name in ("metadata", "errors"):
        files = table_files(root, name, f"stream-*-{run_id}-*.parquet")
        rows = [uri for path in files for uri in read_parquet(path, ["source_uri"]).column(0).to_pylist()]
        counts[f"{name}_files_written"] = len(files)
        if name == "metadata":
            counts["metadata_rows"], counts["images_cropped"] = len(rows), len(set(rows))
        else:
            counts["error_rows"] = len(rows)
    return counts


@dataclasses.dataclass(frozen=True)
class StreamSummary:
    """What a streaming run did, from its counters (or, where the runner reported none or its counters
    are incomplete, from the table files the run wrote: `from_tables`)."""
    counters: dict
    settled: bool  # False: stopped with work in flight (see `settled`)
    from_tables: bool = False

    def lines(self, root: str) -> list[str]:
        c = self.counters
        if self.from_tables:
            return [f"gazecrop (streaming): cropped {c.get('images_cropped', 0)} images "
                    f"({c.get('metadata_rows', 0)} crops), failed {c.get('error_rows', 0)} "
                    f"(read from this run's table files: this runner's counters are missing or incomplete)",
                    f"  table files: metadata {c.get('metadata_files_written', 0)}, errors "
                    f"{c.get('errors_files_written', 0)}",
                    f"  crops:    {join(root, 'crops')}/<ratio>/",
                    f"  metadata: {join(root, 'metadata')}/stream-*.parquet",
                    f"  errors:   {join(root, 'errors')}/stream-*.parquet"]
        failed = c.get("error_rows", 0)
        out = [f"gazecrop (streaming): saw {c.get('inputs_seen', 0)} inputs, ignored {c.get('inputs_ignored', 0)}, "
               f"cropped {c.get('images_cropped', 0)} images ({c.get('metadata_rows', 0)} crops), failed {failed}"]
        if c.get("inputs_already_recorded") or c.get("inputs_duplicate"):
            out.append(f"  skipped: {c.get('inputs_already_recorded', 0)} already in the tables, "
                       f"{c.get('inputs_duplicate', 0)} delivered twice")
        if c.get("notifications_malformed"):
            out.append(f"  malformed notifications: {c['notifications_malformed']} (error rows at stage read)")
        out.append(f"  table files: metadata {c.get('metadata_files_written', 0)}, errors "
                   f"{c.get('errors_files_written', 0)}")
        if not self.settled:
            out.append("  stopped with work in flight: the last window's rows may be missing from the tables")
        out.append(f"  crops:    {join(root, 'crops')}/<ratio>/")
        out.append(f"  metadata: {join(root, 'metadata')}/stream-*.parquet")
        out.append(f"  errors:   {join(root, 'errors')}/stream-*.parquet")
        return out


def _wait(ended: threading.Event, seconds: float | None, stop: Callable[[], bool]) -> None:
    """Until the job has `ended`, `seconds` pass (None: forever), or `stop()`; Ctrl-C also returns.

    An Event, not `Thread.join`: in CPython 3.11 a join interrupted by Ctrl-C can leave the thread
    reported dead while it runs on, and the drain after Ctrl-C was then skipped.
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while not ended.is_set() and not stop():
            if deadline is not None and time.monotonic() >= deadline:
                return
            ended.wait(0.5)
    except KeyboardInterrupt:
        print("gazecrop: stopping (Ctrl-C): finishing what was received")


def run_streaming(options: RunOptions, beam_args: list[str], *,
                  stop_when: Callable[[dict], bool] | None = None, argv: list[str] | None = None) -> StreamSummary:
    """Build and start the streaming job; stop it after --streaming_duration_secs, on Ctrl-C or when
    `stop_when(counters)` is true (tests); let what was received settle; cancel; print the summary.
    Holds the lock of the output root (pipeline/lock.py) for the job's whole life; `argv`: the command
    line it names."""
    pipeline_options = PipelineOptions(beam_args)
    check_runner(options, pipeline_options)
    with root_lock(options.output, argv):
        return _run_locked(options, pipeline_options, stop_when)


def _run_locked(options: RunOptions, pipeline_options: PipelineOptions,
                stop_when: Callable[[dict], bool] | None) -> StreamSummary:
    live_counters = _runner_name(pipeline_options) not in DIRECT_RUNNERS
    p = beam.Pipeline(options=pipeline_options)
    run_id = new_run_id()
    build_streaming(p, options, run_id=run_id)
    result = p.run()
    failure: list[BaseException] = []
    ended = threading.Event()

    def wait_for_job():
        try:
            result.wait_until_finish()
        except BaseException as e:  # noqa: BLE001 (reported by the main thread)
            failure.append(e)
        finally:
            ended.set()

    threading.Thread(target=wait_for_job, name="gazecrop-stream-wait", daemon=True).start()
    duration = options.streaming_duration_secs or None
    _wait(ended, duration, lambda: bool(stop_when and stop_when(counters(result))))
    grace = options.window_seconds + DRAIN_GRACE_SECS
    # Where the counters cannot say when the job has settled, the whole grace period is waited: Flink's
    # portable runner reports none while a job runs, and the DirectRunner's stop growing (see
    # DIRECT_RUNNERS).
    _wait(ended, grace, lambda: live_counters and bool(counters(result)) and settled(counters(result)))
    is_settled = settled(counters(result))
    if not ended.is_set():
        result.cancel()
    if failure:
        raise failure[0]
    reported = counters(result)
    if reported and live_counters:
        summary = StreamSummary(counters=reported, settled=is_settled)
    else:
        summary = StreamSummary(counters=run_table_counts(absolute_uri(options.output), run_id), settled=is_settled,
                                from_tables=True)
    for line in summary.lines(absolute_uri(options.output)):
        print(line)
    return summary
