"""`gazecrop run` / `python -m gazecrop.pipeline.run`: build the pipeline, run it, print a summary.

    gazecrop run photos/*.jpg --output out/ [--aspect_ratios 1:1,16:9] [Beam options]
    gazecrop run --input 'photos/**/*.jpg' --input photos/portrait --output out/

Without inputs (and --input_list) it crops a few demo images it draws itself into ./gazecrop-out.
`gazecrop run` keeps the console to gazecrop's own lines (pipeline/console.py, in pipeline/cli.py);
`python -m gazecrop.pipeline.run` leaves it as the libraries write it.
Failed images are rows of ROOT/errors/, counted by stage and reason in the summary. One run at a time
writes an output root: a run holds its lock `ROOT/_gazecrop.lock` (pipeline/lock.py) while it works.

Exit status (`main`):

* 0: the run finished and at most --max_failure_ratio of the files it processed failed;
* 1: the run failed as a whole (storage unreachable, a worker lost, ...): the tables are still those of
  the last run that finished;
* 2: a usage error found before any work: an unknown option, a value out of its range (argparse), a
  --model that is no model, an unreadable --input_list, a bad --focus table;
* 3: --input and --input_list name no file: nothing was done, no table written;
* 4: more than --max_failure_ratio of the files this run processed failed (with --incremental, the files
  skipped as unchanged, and those retried because they had failed before, do not count): both tables are
  written, the summary says which rule failed;
* 75: another run holds the lock of the output root: nothing was done (run again later);
* 130: interrupted (Ctrl-C): one line says what was written and how to finish (--incremental).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import logging
import os
import signal
import sys
import tempfile
import threading
from typing import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions, PortableOptions,
                                                  StandardOptions, TestOptions)

from gazecrop.pipeline.compose import GazeCrop
from gazecrop.pipeline.demo import write_demo_images
from gazecrop.pipeline.job import counter, counters, focus_table
from gazecrop.pipeline.lock import LockHeldError, root_lock
from gazecrop.pipeline.options import RunOptions, parse
from gazecrop.pipeline.progress import LOCAL_RUNNERS, ProgressBar, count_inputs
from gazecrop.pipeline.stream import run_streaming
from gazecrop.transforms.focus import FocusTableError
from gazecrop.transforms.inference import DeepGazeModelHandler, describe_model
from gazecrop.transforms.metadata import read_table, table_path
from gazecrop.transforms.read import absolute_uri, input_specs, names_a_file, read_input_list
from gazecrop.transforms.write import join

_LOGGER = logging.getLogger(__name__)

# Exit status of `gazecrop run` (see the module docstring).
EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING_MATCHED = 3
EXIT_TOO_MANY_FAILURES = 4
EXIT_LOCKED = 75  # another run holds the output root's lock (sysexits' EX_TEMPFAIL: try again later)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class NothingMatchedError(Exception):
    """--input and --input_list name no file: the run stops before any work."""


class UsageError(Exception):
    """A setting found wrong before any work (a --model that loads no model, an unreadable --input_list):
    its message names the option and the value."""


class NotStartedError(Exception):
    """The run failed before its job started (e.g. storage unreachable while matching): nothing was
    written."""


class InterruptedRun(Exception):
    """Ctrl-C during a batch run: before its job `started` nothing was written; after, crops written so
    far are complete files and the tables are not updated."""

    def __init__(self, root: str, started: bool):
        super().__init__(root)
        self.root, self.started = root, started


@contextlib.contextmanager
def noting_ctrl_c():
    """Within: Ctrl-C (SIGINT) raises KeyboardInterrupt as usual and is also noted in the event yielded,
    since Beam's runners re-raise it wrapped (`RuntimeError: KeyboardInterrupt [while running ...]`)."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield pressed
        return

    def on_sigint(signum, frame):
        pressed.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def say(text: str) -> None:
    """A line of gazecrop's own on the console (stderr, above the progress bar): what is happening."""
    print(f"gazecrop: {text}", file=sys.stderr, flush=True)


def silent(text: str) -> None:
    """`say` where no progress is shown (a log, a remote runner): start-up steps go unsaid."""


def interruptible(fn: Callable, *args):
    """`fn(*args)` in a helper thread while the main thread waits in short steps, so that Ctrl-C stops a
    call that blocks in a read (an --input_list that is a pipe, `--input_list <(ls ...)`): a SIGINT sent
    to the process may be delivered to any of its threads, and a main thread blocked in read() would not
    see it until the read returned."""
    outcome: dict = {}

    def call():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=call, name=f"gazecrop-{getattr(fn, '__name__', 'call')}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def listed_uris(options: RunOptions) -> list[str]:
    """The URIs of the --input_list file (empty without one); `UsageError` naming the file where it cannot
    be read. Read once per run: the file may be large, remote, or a pipe (read so that Ctrl-C works
    while it waits: `interruptible`)."""
    if not options.input_list:
        return []
    try:
        return interruptible(read_input_list, options.input_list)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--input_list {options.input_list} cannot be read: {exc}. "
                         f"Received: --input_list={options.input_list}") from exc


@dataclasses.dataclass(frozen=True)
class Summary:
    """What the tables of a run hold, and (with --incremental) what this run did to them."""
    read: int  # inputs accounted for in the tables: cropped + failed
    cropped: int  # images with metadata rows
    crops: int  # metadata rows
    failed: dict  # (stage, error_type) -> images
    skipped: int | None = None  # --incremental: matched files left as they were (Beam counter)
    processed: int | None = None  # --incremental: matched files that went through the stages
    failed_rule: str | None = None  # why the run failed although it finished (--max_failure_ratio)

    def lines(self, root: str) -> list[str]:
        """The summary: what this run did (with --incremental, apart from what the tables hold), where
        everything is, and the next step (`gazecrop report ROOT`)."""
        failed = sum(self.failed.values())
        held = f"{self.read} files, cropped {self.cropped} images ({self.crops} crops), failed {failed}"
        if self.skipped is None:
            out = [f"gazecrop: read {held}"]
        else:
            out = [f"gazecrop: {self.incremental_line()}", f"  the tables now hold {held}"]
        for (stage, error_type), count in sorted(self.failed.items()):
            out.append(f"  failed at {stage}: {error_type} x {count}")
        out.append(f"  crops:    {join(root, 'crops')}/<ratio>/")
        out.append(f"  metadata: {table_path(root, 'metadata')}")
        out.append(f"  errors:   {table_path(root, 'errors')}")
        if self.failed_rule:
            out.append(f"gazecrop: the run FAILED: {self.failed_rule}")
        out.append(f"  next: gazecrop report {root}   (a page of every crop, least confident first)")
        return out

    def incremental_line(self) -> str:
        """What an --incremental run did: `processed 0 files: all 21 unchanged`, or `processed 2 files (new,
        changed, failed before, or cropped with other settings), skipped 19 unchanged`: a file is processed
        for any of those reasons (docs/operations.md), so the line names them all rather than guess."""
        if not self.processed:
            return f"processed 0 files: all {self.skipped} unchanged since the last run (--incremental)"
        files = "file" if self.processed == 1 else "files"
        return (f"processed {self.processed} {files} (new, changed, failed before, or cropped with other "
                f"settings), skipped {self.skipped} unchanged (--incremental)")


def read_outcomes(root: str) -> tuple[list[dict], list[dict]]:
    """The tables' rows as far as the summary needs them: metadata `source_uri`, `processed_at`; errors
    also `stage`, `error_type`."""
    return (read_table(root, "metadata", ["source_uri", "processed_at"]).to_pylist(),
            read_table(root, "errors", ["source_uri", "stage", "error_type", "processed_at"]).to_pylist())


def summarize(root: str, outcomes: tuple[list[dict], list[dict]] | None = None) -> Summary:
    """Count what the run wrote (the tables are the record of every input); `outcomes`: the tables'
    rows if already read (`read_outcomes`)."""
    metadata, errors = outcomes or read_outcomes(root)
    failed = collections.Counter((e["stage"], e["error_type"]) for e in errors)
    cropped = len({r["source_uri"] for r in metadata})
    return Summary(read=cropped + len(errors), cropped=cropped, crops=len(metadata), failed=dict(failed))


def build(p: beam.Pipeline, options: RunOptions, *, listed: list[str] | None = None,
          handler: DeepGazeModelHandler | None = None, progress_path: str | None = None,
          announce: Callable[[str], None] = silent):
    """Apply the job to `p`; reads the --focus table (and the --input_list, unless `listed` gives its
    URIs) once (they travel with the job), then learns the model's version and input geometry from its
    weights file (`describe_model`; where the file does not record them, and for the tiny test model, by
    loading the model: `announce`d, it takes seconds)."""
    listed = listed_uris(options) if listed is None else listed
    focus = focus_table(options, listed)
    try:
        model_info = describe_model(options.model,
                                    before_loading=lambda: announce(f"loading the model ({options.model})…"))
    except Exception as exc:  # a weights file that is no model, or a broken installation
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise UsageError(f"--model {options.model} cannot be loaded: {reason}. "
                         f"Received: --model={options.model}") from exc
    crop_config, output = options.crop_config(), options.output_config()
    return p | "GazeCrop" >> GazeCrop(
        patterns=list(options.inputs), listed_uris=listed, model_info=model_info,
        crop_config=crop_config, focus=focus, output=output,
        batch_size=options.batch_size, max_megapixels=options.max_megapixels,
        max_input_bytes=options.max_input_bytes, handler=handler, incremental=options.incremental,
        incremental_check=options.incremental_check, progress_path=progress_path)


def with_demo_inputs(options: RunOptions) -> RunOptions:
    """Without inputs: draw the demo images into ROOT/demo-inputs/ (a local temporary folder when ROOT
    is not local) and crop those."""
    if "://" in options.output:
        directory = tempfile.mkdtemp(prefix="gazecrop-demo-inputs-")
    else:
        directory = os.path.join(options.output, "demo-inputs")
    write_demo_images(directory)
    print(f"gazecrop: no --input given; cropping {directory}/* (demo images drawn by gazecrop)")
    return dataclasses.replace(options, inputs=(os.path.join(directory, "*"),))


def built_only(pipeline_options: PipelineOptions) -> str | None:
    """Why the runner only built the job and ran nothing, or None: Dataflow's `--dry_run=True` (job
    graph built, not submitted) and `--template_location` (a classic template written, not run)."""
    if "dataflow" not in str(pipeline_options.view_as(StandardOptions).runner).lower():
        return None
    if pipeline_options.view_as(TestOptions).dry_run:
        return "dry run: Dataflow job graph built, not submitted"
    template = pipeline_options.view_as(GoogleCloudOptions).template_location
    if template:
        return f"Dataflow template written to {template}, not run"
    return None


def shows_progress(options: RunOptions, pipeline_options: PipelineOptions) -> bool:
    """--progress: 'off'; 'on' wherever the workers share this machine's filesystem (a local runner, or
    LOOPBACK workers); 'auto' = 'on' when stderr is also a terminal."""
    if options.progress == "off":
        return False
    runner = str(pipeline_options.view_as(StandardOptions).runner or "").lower()
    loopback = str(pipeline_options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK"
    local = loopback or any(runner.endswith(name) for name in LOCAL_RUNNERS)
    if options.progress == "on" and not local:
        _LOGGER.warning("--progress on: no progress bar, the workers of runner %s do not run on this machine",
                        runner)
    return local and (options.progress == "on" or sys.stderr.isatty())



def check_inputs_match(options: RunOptions, listed: list[str]) -> None:
    """Raise `NothingMatchedError` when --input and the --input_list's URIs (`listed`) name no file,
    before any work. Each pattern is listed only until a file turns up; a non-empty --input_list always
    counts (its missing entries become error rows)."""
    root = options.output_config().root
    if listed or any(names_a_file(spec, root) for spec in input_specs(list(options.inputs), [])):
        return
    given = [f"--input {p}" for p in options.inputs] + ([f"--input_list {options.input_list}"]
                                                         if options.input_list else [])
    verb = "matches" if len(given) == 1 else "match"
    raise NothingMatchedError(f"{', '.join(given)} {verb} no file; nothing was done (no table written)")


def failed_sources(root: str) -> frozenset[str]:
    """The source URIs of the errors table under `root` (empty where there is none yet)."""
    if not FileSystems.exists(table_path(root, "errors")):
        return frozenset()
    return frozenset(read_table(root, "errors", ["source_uri"]).column("source_uri").to_pylist())


def run_outcomes(outcomes: tuple[list[dict], list[dict]],
                 started: datetime.datetime) -> tuple[set[str], set[str]]:
    """The source URIs this run cropped and failed: of the tables' rows (`read_outcomes`), those processed
    at or after `started` (rows an --incremental run kept from earlier runs carry their earlier
    `processed_at`)."""
    return tuple({r["source_uri"] for r in rows if r["processed_at"] >= started} for rows in outcomes)


def failure_rule(cropped: set[str], failed: set[str], *, known_failures: frozenset[str],
                 max_failure_ratio: float) -> str | None:
    """Why the finished run fails by --max_failure_ratio, or None. The ratio is over the files this run
    processed (`cropped`, `failed`), less the `known_failures`: files an --incremental run retries because
    they had failed before (a corrupt upload is retried every night; it must not fail every night)."""
    fresh_failed, fresh = failed - known_failures, (cropped | failed) - known_failures
    if fresh and len(fresh_failed) / len(fresh) > max_failure_ratio:
        retried = " (files that had failed before are retried, not counted)" if known_failures else ""
        return (f"{len(fresh_failed)} of the {len(fresh)} files it processed failed "
                f"({len(fresh_failed) / len(fresh):.0%}){retried}, "
                f"over --max_failure_ratio={max_failure_ratio:g}")
    return None


def progress_bar(options: RunOptions, show: bool, listed: list[str]) -> ProgressBar | None:
    """A `ProgressBar` over this run's inputs (`listed`: the --input_list's URIs) where it is to `show`
    (`shows_progress`), else None."""
    if not show:
        return None
    total = count_inputs(list(options.inputs), listed, options.output_config().root)
    return ProgressBar(total)


def run(argv: list[str] | None = None) -> Summary:
    argv = sys.argv[1:] if argv is None else list(argv)
    options, beam_args = parse(argv)
    if options.streaming:  # until stopped; tables per window (pipeline/stream.py)
        return run_streaming(options, beam_args, argv=argv)
    pipeline_options = PipelineOptions(beam_args)
    # One run at a time writes ROOT's tables (pipeline/lock.py); a job only built, not run, writes none.
    with contextlib.nullcontext() if built_only(pipeline_options) else root_lock(options.output, argv):
        return run_batch(options, pipeline_options)


def run_batch(options: RunOptions, pipeline_options: PipelineOptions) -> Summary:
    """Run the batch job to its end (this process waits for it, on any runner), print the summary."""
    if options.demo:
        options = with_demo_inputs(options)
    p = beam.Pipeline(options=pipeline_options)
    show = shows_progress(options, pipeline_options)
    announce = say if show else silent  # the start-up steps are said where the bar is shown
    try:
        listed = listed_uris(options)
        if not built_only(pipeline_options):  # a job only built (Dataflow --dry_run, a template) reads nothing
            announce("matching inputs…")
            check_inputs_match(options, listed)
        bar = progress_bar(options, show, listed)
        build(p, options, listed=listed, progress_path=bar.path if bar else None, announce=announce)
    except (UsageError, NothingMatchedError, FocusTableError):
        raise
    except KeyboardInterrupt:
        raise InterruptedRun(options.output, started=False) from None
    except Exception as exc:
        raise NotStartedError(exc) from exc
    known_failures = failed_sources(options.output) if options.incremental else frozenset()
    started = datetime.datetime.now(datetime.timezone.utc)
    announce("cropping…")
    with noting_ctrl_c() as ctrl_c:
        try:
            with bar or contextlib.nullcontext():
                result = p.run()
                result.wait_until_finish()
        except BaseException:
            if ctrl_c.is_set():
                raise InterruptedRun(options.output, started=True) from None
            raise
    not_run = built_only(pipeline_options)
    if not_run:  # nothing ran, so there are no tables to summarise
        print(f"gazecrop: {not_run}")
        return Summary(read=0, cropped=0, crops=0, failed={})
    outcomes = read_outcomes(options.output)
    summary = summarize(options.output, outcomes)
    run_counters = counters(result) if options.incremental else {}
    if options.incremental:
        summary = dataclasses.replace(summary, skipped=run_counters.get("files_skipped_unchanged", 0),
                                      processed=run_counters.get("files_new_or_changed", 0))
    cropped, failed = run_outcomes(outcomes, started)
    summary = dataclasses.replace(summary, failed_rule=failure_rule(
        cropped, failed, known_failures=known_failures, max_failure_ratio=options.max_failure_ratio))
    for line in summary.lines(options.output):
        print(line)
    if options.focus:
        unmatched = counter(result, "focus_rows_unmatched")
        if unmatched:
            print(f"  --focus: {unmatched} row(s) named no input file and were ignored (logged as warnings)")
    return summary


def failure_lines(exc: BaseException) -> list[str]:
    """What to tell a user whose run failed as a whole (storage unreachable past its retries, a worker
    lost, ...): the cause in one line, and what is safe to do next (nothing to finish where the job
    never started: `NotStartedError`)."""
    cause = exc.__cause__ if isinstance(exc, NotStartedError) and exc.__cause__ else exc
    text = str(cause).strip().splitlines()
    reason = text[-1].strip() if text else ""
    first = f"gazecrop: the run failed: {type(cause).__name__}{': ' + reason[:500] if reason else ''}"
    if isinstance(exc, NotStartedError):
        return [first, "  it failed before its job started: nothing was written"]
    return [first,
            "  the tables are still those of the last run that finished (they are committed only at the end); "
            "crops already written are complete files",
            "  rerun with --incremental to finish the images this run did not record"]


def interrupted_line(exc: BaseException) -> str:
    """What a Ctrl-C left (`InterruptedRun`): after the batch job started, complete crops and the old
    tables; before, nothing. (A streaming run says what it drains itself: pipeline/stream.py.)"""
    if not isinstance(exc, InterruptedRun):
        return "gazecrop: interrupted (Ctrl-C)"
    if not exc.started:
        return "gazecrop: interrupted before the job started: nothing was written"
    root = absolute_uri(exc.root)
    return (f"gazecrop: interrupted: crops written so far under {join(root, 'crops')}/ are complete "
            f"files; the tables are still the last finished run's. To finish, rerun the same "
            f"command with --incremental")


def main(argv: list[str] | None = None) -> int:
    """`gazecrop run`; returns the exit status (module docstring; argparse exits 2 itself)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run(sys.argv[1:] if argv is None else argv)
    except (FocusTableError, UsageError) as exc:  # found before any work: say what to fix, no traceback
        print(f"gazecrop run: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (InterruptedRun, KeyboardInterrupt) as exc:  # Ctrl-C: one line, no traceback
        print(interrupted_line(exc), file=sys.stderr)
        return EXIT_INTERRUPTED
    except NothingMatchedError as exc:
        print(f"gazecrop run: {exc}", file=sys.stderr)
        return EXIT_NOTHING_MATCHED
    except LockHeldError as exc:  # another run writes this root: nothing was done, nothing to diagnose
        print(f"gazecrop: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except Exception as exc:  # the whole run failed: the traceback for diagnosis, then the plain words last
        _LOGGER.error("the run failed", exc_info=True)
        for line in failure_lines(exc):
            print(line, file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_TOO_MANY_FAILURES if getattr(summary, "failed_rule", None) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
