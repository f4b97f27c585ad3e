"""The `gazecrop run` command line: gazecrop's own options, inputs, and Beam's pipeline options.

`parse(argv)` reads the options below into a `RunOptions`; the inputs are `--input` values (several after
one --input, as an unquoted shell glob gives) and positional arguments (`gazecrop run photos/*.jpg`); a
folder stands for every file under it. Beam's own options (`--runner`, `--direct_num_workers`,
`--project`, ... as Beam's parser knows them: `gazecrop.pipeline.beam_options`) are passed to Beam's
`PipelineOptions` as written; anything else is refused with a suggestion. Every error is one line naming
the option and what it accepts (exit status 2), before any work.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import re
import sys

from gazecrop.pipeline.beam_options import add_beam_options, beam_option_arity
from gazecrop.search import (MAX_ASPECT_RATIOS, MAX_RATIO_SPREAD, MAX_RATIO_TERM, CropConfig,
                             parse_aspect_ratios)
from gazecrop.decode import DEFAULT_MAX_MEGAPIXELS
from gazecrop.transforms.incremental import INCREMENTAL_CHECKS
from gazecrop.transforms.read import DEFAULT_MAX_INPUT_BYTES, absolute_uri
from gazecrop.transforms.write import OUTPUT_FORMATS, OutputConfig

# --model names besides a readout weights file (model.loading.BUNDLED and "tiny"; not imported from there:
# that module imports Keras, seconds before the first line of output).
MODEL_NAMES = ("default", "fast", "tiny")

# Other spellings of the --output_format values (the file extensions people type).
OUTPUT_FORMAT_ALIASES = {"jpg": "jpeg", "jpe": "jpeg"}

DEFAULT_OUTPUT = "gazecrop-out"
DEFAULT_ASPECT_RATIOS = "1:1,16:9,9:16,4:5"
# Default of --max_failure_ratio: a broken model, a wrong bucket or a wrong --input (every file fails)
# fails the run; a few corrupt uploads in a catalog do not.
DEFAULT_MAX_FAILURE_RATIO = 0.5

# Beam runner used when the command line names none. The DirectRunner first tries Beam's Prism runner,
# a binary it downloads; the FnApiRunner is what it falls back to, so naming it directly skips the
# download attempt (these machines may have no network). Both honour --direct_num_workers and
# --direct_running_mode.
DEFAULT_RUNNER = "FnApiRunner"
# Runner used with --streaming when the command line names none: the DirectRunner's bundle-based engine,
# the one local engine that streams (the FnApiRunner runs batch only; see pipeline/stream.py).
DEFAULT_STREAMING_RUNNER = "BundleBasedDirectRunner"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """gazecrop's own options (see `build_parser` for each one's meaning)."""
    inputs: tuple[str, ...] = ()
    input_list: str | None = None
    output: str = DEFAULT_OUTPUT
    aspect_ratios: tuple[tuple[int, int], ...] = parse_aspect_ratios(DEFAULT_ASPECT_RATIOS)
    output_format: str = "jpeg"
    jpeg_quality: int = 90
    max_output_side: int = 0
    model: str = "default"
    batch_size: int = 16
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    save_saliency: bool = False
    saliency_preview: bool = True
    candidates: int = 1
    min_scale: float = 1.0
    focus: str | None = None
    incremental: bool = False
    max_failure_ratio: float = DEFAULT_MAX_FAILURE_RATIO
    incremental_check: str = "mtime"
    progress: str = "auto"
    verbose: bool = False
    # --- streaming (pipeline/stream.py; add_streaming_options) ---
    streaming: bool = False
    input_subscription: str | None = None
    input_prefix: str | None = None
    catch_up: bool = False  # parse(): true by default with --input_prefix
    poll_interval_secs: float = 10.0
    window_seconds: float = 60.0
    max_batch_duration_secs: int = 2
    watch_model_pattern: str | None = None
    watch_model_interval_secs: float = 60.0
    streaming_duration_secs: float = 0.0

    def crop_config(self) -> CropConfig:
        """The crop search these options ask for."""
        return CropConfig(aspect_ratios=self.aspect_ratios, candidates=self.candidates, min_scale=self.min_scale)

    def output_config(self) -> OutputConfig:
        """How and where crops are written (the output root made absolute)."""
        return OutputConfig(root=absolute_uri(self.output), output_format=self.output_format,
                            jpeg_quality=self.jpeg_quality, max_output_side=self.max_output_side,
                            save_saliency=self.save_saliency, saliency_preview=self.saliency_preview,
                            max_megapixels=self.max_megapixels)

    @property
    def demo(self) -> bool:
        """No --input, --input_list or --input_subscription: crop the built-in demo images."""
        return not self.inputs and not self.input_list and not self.input_subscription


# ----------------------------------------------------------------------------------------------
# Ranges of the numeric options (checked in `parse`, before any work; shown in each option's help)
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric option accepts: `low <= value <= high` (`low < value` with `low_open`), or
    exactly 0 where `zero` names what 0 means ("disables"). nan and ±inf are never in a range. `whole`:
    the option takes whole numbers (written `1..10`; other ranges `[1, 60]` or `(0, 1]`)."""
    low: float
    high: float
    low_open: bool = False
    zero: str | None = None
    whole: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.zero and value == 0:
            return True
        above_low = value > self.low if self.low_open else value >= self.low
        return above_low and value <= self.high

    def __str__(self) -> str:
        """How the help and the error messages write the range: `1..10`, `(0, 1]`, `0 or (0, 1000]`."""
        def number(v: float) -> str:
            return f"{v:,}" if v == int(v) and abs(v) >= 10_000 else f"{v:g}"
        if self.low_open:
            text = f"({number(self.low)}, {number(self.high)}]"
        elif self.whole:
            text = f"{number(self.low)}..{number(self.high)}"
        else:
            text = f"[{number(self.low)}, {number(self.high)}]"
        return f"0 ({self.zero}) or {text}" if self.zero else text


# Why each range (a value outside is a typo or a runaway job, refused with the range in the message):
RANGES: dict[str, Range] = {
    # a model batch holds every VGG16 activation of its images: 1024 already needs tens of GB
    "batch_size": Range(1, 1024, whole=True),
    "jpeg_quality": Range(1, 100, whole=True),  # the encoders' own scale
    # OpenCV's JPEG encoder writes at most 65,500 pixels a side
    "max_output_side": Range(1, 65_500, zero="keeps source resolution", whole=True),
    # the decode of a 1000-MP RGB image alone needs 3 GB; a larger legitimate picture disables the guard
    "max_megapixels": Range(0, 1000, low_open=True, zero="disables"),
    # 10 GB: an input is read whole into a worker's memory
    "max_input_bytes": Range(1, 10_000_000_000, zero="disables", whole=True),
    # each rank is one more search and one more file per ratio; ranks past a few rarely exist (overlap rule)
    "candidates": Range(1, 10, whole=True),
    "min_scale": Range(0, 1, low_open=True),  # a share of the largest window
    "max_failure_ratio": Range(0, 1),  # a share of the files processed
    # streaming: listings, windows and model watches more often than every second cost more than they
    # give; one day is the longest wait that is not a mistake
    "poll_interval_secs": Range(1, 86_400),
    "window_seconds": Range(1, 86_400),
    "max_batch_duration_secs": Range(1, 600, whole=True),
    "watch_model_interval_secs": Range(1, 86_400),
    "streaming_duration_secs": Range(0, 31_536_000, low_open=True, zero="until Ctrl-C or cancelled"),  # up to a year
}


def _in_range(name: str, default) -> str:
    """The end of an option's help: its range and default (`range 1..10; default: 1`)."""
    return f"range {RANGES[name]}; default: {default}"


def _check_ranges(parser: argparse.ArgumentParser, known: argparse.Namespace) -> None:
    """Refuse a numeric option outside its `RANGES` entry (nan and inf included), naming the range."""
    for name, accepted in RANGES.items():
        value = getattr(known, name)
        if value not in accepted:
            parser.error(f"--{name} accepts {accepted}. Received: --{name}={value}")


def _aspect_ratios(text: str):
    """`parse_aspect_ratios` for argparse, keeping its message (argparse would print "invalid value")."""
    try:
        return parse_aspect_ratios(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _flag(value: str) -> bool:
    """`--flag=true|false` (how Flex Templates and schedulers pass a switch); a bare `--flag` is true."""
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _output_format(text: str) -> str:
    """--output_format, case-insensitive, with the extensions people type (`jpg`) as aliases."""
    value = OUTPUT_FORMAT_ALIASES.get(text.lower(), text.lower())
    if value not in OUTPUT_FORMATS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(OUTPUT_FORMATS)} (or jpg). "
                                         f"Received: {text!r}")
    return value


def _model(text: str) -> str:
    """--model: one of `MODEL_NAMES`, or a readout weights file that exists (checked before any work)."""
    if text in MODEL_NAMES or os.path.isfile(text):
        return text
    close = difflib.get_close_matches(text, MODEL_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise argparse.ArgumentTypeError(f"expected {', '.join(MODEL_NAMES)} or a readout weights file "
                                     f"(*.weights.h5) that exists{hint}. Received: {text!r}")


def folder_as_pattern(path: str) -> str:
    """An input naming a folder (a local directory, or any URI ending with '/') as the pattern of every
    file under it (`photos/portrait` -> `photos/portrait/**`), its wildcard characters written literally
    (`gazecrop.transforms.read.glob_regex`); any other input unchanged."""
    if not (path.endswith("/") or ("://" not in path and os.path.isdir(path))):
        return path
    literal = "".join(f"[{c}]" if c in "*?[" else c for c in path.rstrip("/"))
    return literal + "/**"


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage dump before it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gazecrop run", allow_abbrev=False,
        description="Crop images to aspect ratios, keeping what people look at. Options not listed "
                    "here are Apache Beam pipeline options (--runner, --direct_num_workers, ...).",
        epilog="exit status: 0 done; 1 the run failed as a whole (the tables are the last finished run's); "
               "2 usage error (an unknown option, a bad value, a --model or --input_list that cannot be "
               "used, a --focus table), nothing done; 3 the inputs name no file, nothing done; 4 more than "
               "--max_failure_ratio of the files processed failed (both tables written; the summary says "
               "so); 75 another run holds the output root's lock, nothing done; 130 interrupted (Ctrl-C): "
               "crops written so far are complete, rerun with --incremental to finish")
    parser.add_argument("paths", nargs="*", metavar="INPUT",
                        help="files, folders or patterns to crop, as --input takes them")
    parser.add_argument("--input", dest="inputs", action="extend", nargs="+", default=[], metavar="PATTERN",
                        help="files to crop: paths (several after one --input, as a shell glob gives), a "
                             "folder (every file under it, recursively; files that are not images become "
                             "error rows), a glob (photos/**/*.jpg) or a gs:// or s3:// pattern; repeatable. "
                             "Outputs keep each file's path relative to the pattern's directory before its "
                             "first wildcard (a folder's: the folder). Without inputs, gazecrop crops its "
                             "built-in demo images.")
    parser.add_argument("--input_list", default=None, metavar="FILE",
                        help="a file (any filesystem) listing one URI per line ('#' comments); outputs "
                             "keep each path relative to the listed URIs' common directory")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, metavar="ROOT",
                        help="output root (local path, gs://, s3://): crops/, metadata/, errors/, "
                             "saliency/ (default: %(default)s)")
    parser.add_argument("--aspect_ratios", default=DEFAULT_ASPECT_RATIOS, type=_aspect_ratios,
                        help=f"comma-separated W:H ratios (also WxH, W/H, and decimals: 1.91:1 is "
                             f"191:100), one crop each: at most {MAX_ASPECT_RATIOS}, each "
                             f"term a whole number 1..{MAX_RATIO_TERM}, each ratio within 1:{MAX_RATIO_SPREAD}"
                             f"..{MAX_RATIO_SPREAD}:1 (default: %(default)s)")
    parser.add_argument("--output_format", default="jpeg", type=_output_format,
                        help=f"crop file format: {', '.join(OUTPUT_FORMATS)} (jpg, any case, is jpeg); "
                             "'source' keeps JPEG, PNG and WebP sources in their format and writes others "
                             "as PNG (default: %(default)s)")
    parser.add_argument("--jpeg_quality", default=90, type=int,
                        help=f"JPEG (and WebP) quality ({_in_range('jpeg_quality', '%(default)s')})")
    parser.add_argument("--max_output_side", default=0, type=int,
                        help="downscale crops so their longer side is at most this many pixels; "
                             f"never upscales ({_in_range('max_output_side', '%(default)s')})")
    parser.add_argument("--model", default="default", type=_model,
                        help="'default' (bundled weights), 'fast' (bundled pruned, distilled model: about 16x "
                             "faster, short side 128), 'tiny' (random test model) or a readout weights file "
                             "(default: %(default)s)")
    parser.add_argument("--batch_size", default=16, type=int,
                        help=f"largest number of images per model call ({_in_range('batch_size', '%(default)s')})")
    parser.add_argument("--max_megapixels", default=DEFAULT_MAX_MEGAPIXELS, type=float,
                        help="refuse images whose header declares more megapixels, before decoding "
                             f"(decompression-bomb guard; {_in_range('max_megapixels', '%(default)s')})")
    parser.add_argument("--max_input_bytes", default=DEFAULT_MAX_INPUT_BYTES, type=int, metavar="BYTES",
                        help="refuse larger input files, from the size the match reports, before "
                             f"reading them ({_in_range('max_input_bytes', '%(default)s')})")
    parser.add_argument("--save_saliency", action="store_true",
                        help="also write each image's log-density map to ROOT/saliency/<relpath>.npy")
    parser.add_argument("--saliency_preview", nargs="?", const=True, default=True, type=_flag, metavar="BOOL",
                        help="write a small preview of each image's saliency map to "
                             "ROOT/saliency/<relpath>.png (a few KB: the heat map of `gazecrop report`); "
                             "changes no crop or metadata row (default: true)")
    parser.add_argument("--candidates", default=1, type=int, metavar="N",
                        help="ranked crops per ratio (rank 0 = best, the only one by default); a rank k > 0 "
                             "is the best window overlapping every better one by at most half "
                             "(intersection over union) and is written to <relpath>.rank<k>.<ext>; fewer "
                             "come back where the picture leaves no such room "
                             f"({_in_range('candidates', '%(default)s')})")
    parser.add_argument("--min_scale", default=1.0, type=float, metavar="S",
                        help="smallest crop tried, as a share of the largest window of the ratio (linear "
                             "size); below 1, windows of scale 1.0, 0.9, ... >= S compete and a "
                             "smaller one wins when it keeps nearly as much of the predicted attention "
                             "(a small subject gets a tighter crop); never upscales "
                             f"({_in_range('min_scale', '%(default)s')})")
    parser.add_argument("--focus", default=None, metavar="TABLE",
                        help="CSV (UTF-8) or Parquet table (any filesystem) of regions the crops must "
                             "contain, one row per image: columns source (the source URI, or its path "
                             "relative to an input root), x, y and optionally width, height: numbers >= 0, "
                             "in pixels of the upright picture (a region past the picture's edge is clamped "
                             "to it). A relative path that names files under two input roots, two rows "
                             "naming one file, or a bad value stop the run before any work. Read once when "
                             "the job is built; a person's hint beats the model.")
    parser.add_argument("--incremental", nargs="?", const=True, default=False, type=_flag, metavar="BOOL",
                        help="crop only the files that are new or changed since the tables under ROOT were "
                             "written, or that were made with another model or other crop settings; the "
                             "tables are rewritten with one row set per image (the rows of skipped images "
                             "are kept; a run killed halfway leaves the old tables intact)")
    parser.add_argument("--max_failure_ratio", default=DEFAULT_MAX_FAILURE_RATIO, type=float, metavar="R",
                        help="the run fails (exit status 4, after writing both tables) when more than this "
                             "share of the files it processed failed (with --incremental: not counting those "
                             "skipped as unchanged, nor those retried because they had failed before); 0 fails "
                             "on any failure, 1 never "
                             f"({_in_range('max_failure_ratio', '%(default)s')})")
    parser.add_argument("--incremental_check", default="mtime", choices=INCREMENTAL_CHECKS,
                        help="with --incremental, how a file is known to be unchanged: 'mtime' compares the "
                             "size and modification time the listing reports, and on gs:// the object "
                             "generation (exact: every write makes a new one); 'content' also reads each "
                             "file without a generation (local, s3://) that looks unchanged and compares its "
                             "SHA-256 with the table's source_sha256 (a read of every such file, no decode or "
                             "model call): it catches a rewrite that kept size and time (cp "
                             "--preserve=timestamps, touch -r) (default: %(default)s)")
    parser.add_argument("--progress", default="auto", choices=("auto", "on", "off"),
                        help="a progress bar on stderr while a local run works: 'auto' shows it when stderr "
                             "is a terminal and the runner is local (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true",
                        help="leave TensorFlow's, Beam's and the workers' own messages on the console "
                             "(by default they go to a log file, named when the run fails; the "
                             "environment variable GAZECROP_VERBOSE=1 does the same)")
    add_streaming_options(parser)
    add_beam_options(parser)
    return parser


# ----------------------------------------------------------------------------------------------
# Streaming (pipeline/stream.py)
# ----------------------------------------------------------------------------------------------

# Options that only mean something with --streaming.
STREAMING_ONLY = ("input_subscription", "input_prefix", "catch_up", "poll_interval_secs", "window_seconds",
                  "max_batch_duration_secs", "watch_model_pattern", "watch_model_interval_secs",
                  "streaming_duration_secs")


def add_streaming_options(parser: argparse.ArgumentParser) -> None:
    """`--streaming` and its options. --streaming is also passed on to Beam (its own option too)."""
    group = parser.add_argument_group("streaming", "crop files as they arrive (--streaming)")
    group.add_argument("--streaming", action="store_true",
                       help="run as a streaming job: crop images as they arrive, from --input_subscription "
                            "or from files appearing under --input, until stopped")
    group.add_argument("--input_subscription", default=None, metavar="projects/P/subscriptions/S",
                       help="Pub/Sub subscription of GCS object notifications; OBJECT_FINALIZE events are "
                            "cropped, other events ignored")
    group.add_argument("--input_prefix", default=None, metavar="gs://BUCKET/PREFIX/",
                       help="with --input_subscription: crop only objects under this prefix, named "
                            "relative to it (default: every notified object, named <bucket>/<object>)")
    group.add_argument("--catch_up", nargs="?", const=True, default=None, type=_flag, metavar="BOOL",
                       help="with --input_prefix: at start, also list the prefix once and crop every image "
                            "there that the tables under ROOT do not record yet (what a stopped run took "
                            "from the subscription but never recorded); default: true with --input_prefix")
    group.add_argument("--poll_interval_secs", default=10.0, type=float, metavar="S",
                       help="with --streaming --input: seconds between listings of the pattern "
                            f"({_in_range('poll_interval_secs', '%(default)s')})")
    group.add_argument("--window_seconds", default=60.0, type=float, metavar="S",
                       help="the tables are written per fixed window of this many seconds, as "
                            "ROOT/metadata/stream-<start>-<end>-<run id>-<shard>-of-<n>.parquet "
                            f"({_in_range('window_seconds', '%(default)s')})")
    group.add_argument("--max_batch_duration_secs", default=2, type=int, metavar="S",
                       help="longest wait, in whole seconds, for a model batch to fill "
                            f"({_in_range('max_batch_duration_secs', '%(default)s')})")
    group.add_argument("--watch_model_pattern", default=None, metavar="PATTERN",
                       help="swap in the newest readout weights file matching PATTERN that appears while "
                            "the job runs (the model handler looks before a batch, at most every "
                            "--watch_model_interval_secs); rows carry the new model's version from then on")
    group.add_argument("--watch_model_interval_secs", default=60.0, type=float, metavar="S",
                       help="seconds between listings of --watch_model_pattern "
                            f"({_in_range('watch_model_interval_secs', '%(default)s')})")
    group.add_argument("--streaming_duration_secs", default=0.0, type=float, metavar="S",
                       help="stop after this many seconds, once what was received is written (tests, demos; "
                            f"{_in_range('streaming_duration_secs', '%(default)s')})")


def _check_streaming(parser: argparse.ArgumentParser, known: argparse.Namespace) -> None:
    """The streaming options' own rules, and --streaming's input rules."""
    if not known.streaming:
        given = [name for name in STREAMING_ONLY if getattr(known, name) != parser.get_default(name)]
        if given:
            parser.error(f"--{given[0]} needs --streaming")
        return
    if known.input_list or known.incremental:
        parser.error("--streaming takes --input_subscription or --input patterns, not --input_list or "
                     "--incremental")
    if bool(known.input_subscription) == bool(known.inputs):
        parser.error("--streaming needs exactly one kind of input: --input_subscription "
                     "projects/P/subscriptions/S, or --input PATTERN (files appearing under it)")
    if known.input_subscription and not re.match(r"^projects/[^/]+/subscriptions/[^/]+$", known.input_subscription):
        parser.error(f"--input_subscription must be projects/P/subscriptions/S. "
                     f"Received: --input_subscription={known.input_subscription}")
    if known.input_prefix and not known.input_subscription:
        parser.error("--input_prefix goes with --input_subscription")
    if known.catch_up and not known.input_prefix:
        parser.error("--catch_up lists --input_prefix: give --input_prefix gs://BUCKET/PREFIX/")


def _refuse_unknown_options(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """Refuse what neither gazecrop nor Beam knows (Beam would discard it with a warning), suggesting
    the closest option of either (`--aspect_ratio` -> `--aspect_ratios`)."""
    if not unknown:
        return
    flag = unknown[0].split("=", 1)[0]
    ours = [o for action in parser._actions for o in action.option_strings
            if o.startswith("--") and action.help != argparse.SUPPRESS]
    close = (difflib.get_close_matches(flag, ours, n=1, cutoff=0.7)
             or difflib.get_close_matches(flag, list(beam_option_arity()), n=1, cutoff=0.7))
    hint = (f"did you mean {close[0]}?" if close
            else "`gazecrop run --help` lists gazecrop's options; Apache Beam's pass through.")
    parser.error(f"unknown option {flag}: {hint} Received: {' '.join(unknown)}")


def parse(argv: list[str] | None) -> tuple[RunOptions, list[str]]:
    """gazecrop's options and the remaining (Beam) arguments, with the default runner added."""
    parser = build_parser()
    known, unknown = parser.parse_known_intermixed_args(sys.argv[1:] if argv is None else argv)
    _refuse_unknown_options(parser, unknown)
    known.inputs = [folder_as_pattern(p) for p in [*known.inputs, *known.paths]]
    beam_args = known.beam_args
    _check_ranges(parser, known)
    _check_streaming(parser, known)
    if known.incremental_check != parser.get_default("incremental_check") and not known.incremental:
        parser.error(f"--incremental_check needs --incremental. Received: --incremental_check="
                     f"{known.incremental_check} without --incremental")
    if not any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        beam_args = [f"--runner={DEFAULT_STREAMING_RUNNER if known.streaming else DEFAULT_RUNNER}", *beam_args]
    if known.streaming:
        beam_args = [*beam_args, "--streaming"]  # Beam's own option too
    # Every RunOptions field is the dest of one option above, so a new option cannot be parsed and then
    # silently left at its default here.
    values = {field.name: getattr(known, field.name) for field in dataclasses.fields(RunOptions)}
    catch_up = bool(known.input_prefix) if known.catch_up is None else known.catch_up
    options = RunOptions(**{**values, "inputs": tuple(known.inputs), "catch_up": catch_up})
    return options, beam_args
