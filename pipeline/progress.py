"""A progress bar for local runs: how many images are accounted for, how fast, how long to go.

Beam runs the pipeline's work in its SDK workers (threads of this process, or other processes with
`--direct_running_mode=multi_processing`, or a LOOPBACK worker of a local Flink), and reports metrics only
when the run ends. So the workers report progress through a local file instead: `Tick` appends one byte
per image that is accounted for (cropped, failed, or skipped as unchanged), with O_APPEND so that
processes never overwrite each other's bytes, and a thread of the launcher reads the file's size twice a
second and redraws the bar on stderr. The total is the number of files the inputs match, counted by the
launcher before the run.

This works wherever the workers share the launcher's filesystem: local runners, and LOOPBACK workers.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time

import apache_beam as beam

from gazecrop.transforms.read import files_of, input_specs

# Runners whose workers run on this machine.
LOCAL_RUNNERS = ("fnapirunner", "directrunner", "bundlebaseddirectrunner", "switchingdirectrunner",
                 "prismrunner")


class _TickFn(beam.DoFn):
    def __init__(self, path: str):
        self._path = path

    def process(self, element):
        try:  # progress is best effort: it must never fail the run
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, b".")
            finally:
                os.close(fd)
        except OSError:
            pass
        yield element


class Tick(beam.PTransform):
    """Append one byte to the local file `path` per element (one element per accounted image)."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, done):
        return done | "Tick" >> beam.ParDo(_TickFn(self._path))


def count_inputs(patterns: list[str], listed_uris: list[str], output_root: str) -> int:
    """How many distinct files the patterns and the listed URIs name (the bar's total), matched as the
    read stage matches them (`gazecrop.transforms.read.files_of`); a listed URI that names no file counts once
    (it becomes an error row)."""
    paths = set()
    for spec in input_specs(patterns, listed_uris):
        try:
            paths.update(m.path for m in files_of(spec, output_root))
        except (FileNotFoundError, ValueError):
            paths.add(spec.uri)
    return len(paths)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


# No rate (and no ETA) is shown until this many images are done after the first: the first ones wait
# for the model to load in the workers, so a rate over them is no measure of the rest.
MEASURED_AFTER = 3


def render(done: int, total: int, elapsed: float, rate: float | None = None, width: int = 30) -> str:
    """One line of the bar: `[#####.....] 120/2000 images  5.1/s  ETA 6m08s`; without a measured
    `rate` (images per second) only the time elapsed; once all are done, the time taken."""
    share = min(done / total, 1.0) if total else 0.0
    filled = int(round(width * share))
    speed = f"  {rate:.1f}/s" if rate else ""
    eta = f"ETA {_duration((total - done) / rate)}" if rate and done < total else _duration(elapsed)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} images{speed}  {eta}"


class RateMeter:
    """Images per second measured from the first image done (not from the start: the model loads
    first), known once `MEASURED_AFTER` more are done."""

    def __init__(self):
        self._first: tuple[float, int] | None = None  # (time, done) when an image was first seen done

    def rate(self, done: int, now: float) -> float | None:
        if self._first is None:
            if done:
                self._first = (now, done)
            return None
        since, done_then = self._first
        if done - done_then < MEASURED_AFTER or now <= since:
            return None
        return (done - done_then) / (now - since)


class ProgressBar:
    """Context manager: a thread that redraws the bar from the tick file's size until the run ends.

    `path` is the tick file (in a temporary folder of its own, removed at the end). On a terminal the
    bar is redrawn in place; otherwise (a log file) one line is written every `log_every` seconds.
    """

    def __init__(self, total: int, *, stream=None, interval: float = 0.5, log_every: float = 10.0):
        self._folder = tempfile.mkdtemp(prefix="gazecrop-progress-")
        self.path = os.path.join(self._folder, "ticks")
        self._total = total
        self._stream = stream or sys.stderr
        self._interval = interval
        self._log_every = log_every
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gazecrop-progress", daemon=True)
        self._start = 0.0
        self._meter = RateMeter()

    def done(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def _draw(self, final: bool = False) -> None:
        done, now = self.done(), time.monotonic()
        line = render(done, self._total, now - self._start, rate=self._meter.rate(done, now))
        if self._tty:  # redrawn in place; `ESC [K` clears what a longer line left to the right
            self._stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self._stream.write("gazecrop: " + line + "\n")
        self._stream.flush()

    def _loop(self) -> None:
        last_line = time.monotonic()
        while not self._stop.wait(self._interval):
            if self._tty or time.monotonic() - last_line >= self._log_every:
                self._draw()
                last_line = time.monotonic()

    def __enter__(self):
        open(self.path, "wb").close()
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._draw(final=True)
        shutil.rmtree(self._folder, ignore_errors=True)
        return False
