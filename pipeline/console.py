"""The console of `gazecrop run`: gazecrop's own lines only; everything else to a log file.

TensorFlow, absl and XLA print from C++ (`cpu_feature_guard`, oneDNN notices, `E0000 ... cuInit`),
some before any environment variable is read, and Beam warns at import time (`Resource module is not
available`); worker processes inherit the launcher's stderr. No setting silences them all, so `quiet()`
works on the file descriptor: it keeps a duplicate of the real stderr for gazecrop's own output
(`sys.stderr`: prints, the progress bar, gazecrop's warnings), then points file descriptor 2 at a log
file, where every C++ library and child process writes, and sends Python logging there too.

`--verbose` (or the environment variable GAZECROP_VERBOSE=1) leaves the console as it is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile

VERBOSE_ENV = "GAZECROP_VERBOSE"

# gazecrop's own loggers: their warnings stay on the console (as `gazecrop: warning: ...`).
OWN_LOGGERS = ("pipeline", "transforms", "model")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def wants_verbose(argv: list[str]) -> bool:
    """--verbose on the command line, or GAZECROP_VERBOSE=1 (or true/yes) in the environment."""
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes")


def _console_stream():
    """A stream to the real stderr that survives fd 2 being redirected: a duplicate of fd 2 where
    sys.stderr writes to it; else (tests capturing sys.stderr) sys.stderr itself."""
    try:
        if sys.stderr.fileno() != 2:
            return sys.stderr
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return sys.stderr
    sys.stderr.flush()
    return os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")


def _route_logging(log_stream) -> list[logging.Handler]:
    """Every Python log record (INFO and up) to the log file; gazecrop's own warnings also to the
    console. Returns the handlers added (`_unroute_logging` removes them)."""
    to_file = logging.StreamHandler(log_stream)
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    to_console = logging.StreamHandler()  # sys.stderr at emit time: the console during the run
    to_console.setLevel(logging.WARNING)
    to_console.setFormatter(logging.Formatter("gazecrop: %(levelname)s: %(message)s"))
    # gazecrop's own warnings, less their tracebacks (those are for the log)
    to_console.addFilter(lambda record: record.name.split(".")[0] in OWN_LOGGERS and not record.exc_info)
    root = logging.getLogger()
    for handler in (to_file, to_console):
        root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, logging.INFO))
    logging.captureWarnings(True)  # Python warnings (deprecations, ...) are log records too
    return [to_file, to_console]


def _unroute_logging(handlers: list[logging.Handler], level: int) -> None:
    """Undo `_route_logging`: its handlers removed, the root logger's level as it was."""
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


@contextlib.contextmanager
def quiet(argv: list[str]):
    """Within: fd 2 and Python logging go to a log file, `sys.stderr` to the console. Yields the log
    file's path (None with --verbose). The log is removed when the block ends normally and is kept
    otherwise (`kept_log` names it)."""
    if wants_verbose(argv):
        yield None
        return
    console = _console_stream()
    fd, log_path = tempfile.mkstemp(prefix="gazecrop-run-", suffix=".log")
    saved_fd2 = os.dup(2) if console is not sys.stderr else None
    saved_stderr = sys.stderr
    log_stream = os.fdopen(fd, "a", buffering=1, errors="backslashreplace")
    if saved_fd2 is not None:
        os.dup2(fd, 2)
    sys.stderr = console
    level = logging.getLogger().level
    handlers = _route_logging(log_stream)
    try:
        yield log_path
    finally:
        _unroute_logging(handlers, level)
        sys.stderr = saved_stderr
        if saved_fd2 is not None:
            os.dup2(saved_fd2, 2)
            os.close(saved_fd2)
            console.close()
        log_stream.close()


def discard_log(log_path: str | None) -> None:
    """Remove the log of a run that succeeded (nothing in it to act on)."""
    if log_path:
        with contextlib.suppress(OSError):
            os.remove(log_path)


def log_hint(log_path: str | None) -> str | None:
    """The line naming the log of a run that did not succeed, or None (--verbose: no log)."""
    if not log_path:
        return None
    return f"gazecrop: the full log (TensorFlow, Beam, workers) is {log_path}; --verbose shows it on the console"

