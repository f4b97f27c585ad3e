"""Every `gazecrop run` option, defined once: name, parse function, default, range or choices, help text, and
the group (and crop or output config) it belongs to.

From `OPTIONS` are derived: the argparse parser (`gazecrop.pipeline.options.build_parser`), the fields and
defaults of `RunOptions`, the range and "needs" checks (`gazecrop.pipeline.options.check_values`), the
options reference `docs/options.md` (`markdown()`) and the Dataflow Flex Template's parameters
`launch/flex_template_metadata.json` (`flex_template()`). Both files are written by
`python -m gazecrop.pipeline.options --markdown > docs/options.md` and
`python -m gazecrop.pipeline.options --flex_template > launch/flex_template_metadata.json`;
tests/test_options_table.py fails when either differs from what the table gives.

The options that feed the crop search (`config="crop"`) and the crop writer (`config="output"`) take their
defaults from `CropConfig` and `OutputConfig`, the library's own definition of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

from gazecrop.model.card import MODEL_NAMES
from gazecrop.pipeline.argtypes import parse_model, parse_ratios
from gazecrop.search import (MAX_ASPECT_RATIOS, MAX_RATIO_SPREAD, MAX_RATIO_TERM, CropConfig,
                             ratio_label)
from gazecrop.transforms.incremental import INCREMENTAL_CHECKS
from gazecrop.transforms.read import DEFAULT_MAX_INPUT_BYTES
from gazecrop.transforms.write import OUTPUT_FORMATS, OutputConfig


# Other spellings of the --output_format values (the file extensions people type).
OUTPUT_FORMAT_ALIASES = {"jpg": "jpeg", "jpe": "jpeg"}

DEFAULT_OUTPUT = "gazecrop-out"
# Default of --max_failure_ratio: a broken model, a wrong bucket or a wrong --input (every file fails)
# fails the run; a few corrupt uploads in a catalog do not.
DEFAULT_MAX_FAILURE_RATIO = 0.5


# ----------------------------------------------------------------------------------------------
# Ranges of the numeric options (checked before any work; shown in each option's help)
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


# ----------------------------------------------------------------------------------------------
# Parse functions (argparse `type=`): each keeps its own message, which names what it accepts
# ----------------------------------------------------------------------------------------------

def parse_bool(value: str) -> bool:
    """`--flag=true|false` (how Flex Templates and schedulers pass a switch); a bare `--flag` is true."""
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_output_format(text: str) -> str:
    """--output_format, case-insensitive, with the extensions people type (`jpg`) as aliases."""
    value = OUTPUT_FORMAT_ALIASES.get(text.lower(), text.lower())
    if value not in OUTPUT_FORMATS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(OUTPUT_FORMATS)} (or jpg). "
                                         f"Received: {text!r}")
    return value


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------

# How an option is written on the command line.
VALUE = "value"      # --name VALUE (or --name=VALUE)
SWITCH = "switch"    # --name alone (argparse store_true)
BOOL = "bool"        # --name, --name=true, --name=false (Flex Templates and schedulers pass a value)
INPUTS = "inputs"    # --input PATTERN ... (repeatable, several values each) and the positional INPUTs

# Sections of --help and of docs/options.md, in order.
GROUPS = {"input": "Inputs", "output": "Output files", "crop": "Crops", "model": "Model", "run": "Run",
          "streaming": "Streaming"}
GROUP_NOTES = {"streaming": "crop files as they arrive (--streaming); every option below but --streaming "
                            "needs --streaming"}


@dataclasses.dataclass(frozen=True)
class Flex:
    """How an option appears as a Dataflow Flex Template parameter: its label in the console, the regexes
    the console checks a value against (None: derived from the option's range, choices or kind), and a
    help text of its own where the command line's does not fit a Dataflow job (gs:// only)."""
    label: str
    regexes: tuple[str, ...] | None = None
    help: str | None = None
    optional: bool = True


@dataclasses.dataclass(frozen=True)
class Option:
    """One `gazecrop run` option.

    Attributes:
      name: the flag without its dashes (`--name`), and the `RunOptions` field (`dest`, for --input).
      help: what it does, for --help and docs/options.md (the range and the default are appended there).
      default: the value when the option is not given, as typed on the command line (argparse runs `parse`
        on a string default, as on a typed value).
      parse: argparse `type=`: text to value, raising `argparse.ArgumentTypeError` naming what it accepts.
      range: the numbers it accepts (checked by `check_values`, before any work).
      choices: the values it accepts (argparse refuses others, unless `parse` does the refusing).
      kind: VALUE, SWITCH, BOOL or INPUTS (how it is written).
      metavar: the placeholder for its value in --help and the docs.
      group: its section (`GROUPS`).
      config: "crop" (a `CropConfig` field) or "output" (an `OutputConfig` field) of the same name.
      needs: another option without which giving this one is refused.
      shown_default: the default as the docs write it, where `default` alone says too little.
      values: what it accepts, in a few words, where no range or choices say it (docs/options.md).
      flex: its Flex Template parameter, if it is one.
    """
    name: str
    help: str
    default: Any = None
    parse: Callable[[str], Any] | None = None
    range: Range | None = None
    choices: tuple[str, ...] | None = None
    kind: str = VALUE
    metavar: str | None = None
    group: str = "run"
    config: str | None = None
    needs: str | None = None
    shown_default: str | None = None
    values: str | None = None
    flex: Flex | None = None

    @property
    def dest(self) -> str:
        """Its `RunOptions` field: the name, but `inputs` for the repeatable --input."""
        return "inputs" if self.kind == INPUTS else self.name

    @property
    def value(self) -> Any:
        """Its default as `RunOptions` holds it (`parse` run on a string default, as argparse does)."""
        if self.kind == INPUTS:
            return ()
        if self.parse is not None and isinstance(self.default, str):
            return self.parse(self.default)
        return self.default

    def default_text(self) -> str:
        """The default as --help and the docs write it ("" for none)."""
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None or self.kind == SWITCH:
            return ""
        if isinstance(self.default, bool):
            return str(self.default).lower()
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)

    def accepts(self) -> str:
        """What its value may be, in a few words: the range, the choices, `true or false` ("" where the
        help says it)."""
        if self.values is not None:
            return self.values
        if self.range is not None:
            return str(self.range)
        if self.choices:
            return ", ".join(self.choices)
        if self.kind == BOOL:
            return "true or false (alone: true)"
        if self.kind == SWITCH:
            return "(a switch)"
        return ""


def _config_default(config: type, name: str) -> Any:
    """A field's default in a config dataclass (`CropConfig`, `OutputConfig`): those options' defaults are
    the library's, not restated here."""
    return next(f.default for f in dataclasses.fields(config) if f.name == name)


# Flex Template values: Dataflow's workers read gs:// only.
_GS_URI = r"^gs://[^\n\r]+$"
# One --aspect_ratios term as `parse_aspect_ratios` reads it (W:H, WxH, W/H; decimal terms), without spaces.
_RATIO = r"[0-9]+(\.[0-9]+)?[:xX/][0-9]+(\.[0-9]+)?"

OPTIONS: tuple[Option, ...] = (
    # --- inputs ---
    Option("input", kind=INPUTS, metavar="PATTERN", group="input", shown_default="(the demo images)",
           help="files to crop: paths (several after one --input, as an unquoted shell glob gives, or positional: "
                "`gazecrop run photos/*.jpg`), a folder (every file under it, recursively, named relative to the "
                "folder; files that are not images become error rows), a glob (`photos/**/*.jpg`) or a gs:// or "
                "s3:// pattern; repeatable. `*` and `?` stay within a folder, `**/` is any number of folders, "
                "`[...]` a character class; to match those characters literally write `[[]`, `[?]`, `[*]`. A "
                "path without wildcards is one file, whatever its name holds. Outputs keep each file's path "
                "relative to the pattern's directory before its first wildcard (a folder's: the folder). Without "
                "inputs, gazecrop crops its built-in demo images.",
           flex=Flex("Input pattern", regexes=(_GS_URI,), optional=False,
                     help="The images to crop: a gs:// path or glob, e.g. gs://my-bucket/catalog/**/*.jpg. "
                          "Outputs keep each file's path relative to the pattern's directory before its first "
                          "wildcard.")),
    Option("input_list", metavar="FILE", group="input",
           help="a file (any filesystem) listing one URI per line (`#` comments); each line is a literal name, "
                "never a pattern, and a listed URI that does not exist becomes an error row; outputs keep each "
                "path relative to the listed URIs' common directory"),
    Option("max_megapixels", default=_config_default(OutputConfig, "max_megapixels"), parse=float, metavar="MP",
           group="input", config="output", range=Range(0, 1000, low_open=True, zero="disables"),
           # the decode of a 1000-MP RGB image alone needs 3 GB; a larger legitimate picture disables the guard
           help="refuse any image whose header declares more megapixels, or whose decode would need more than 8 "
                "bytes per allowed pixel (16-bit and alpha images count their depth: 16-bit RGBA up to half the "
                "limit), before decoding it (decompression-bomb and memory guard)"),
    Option("max_input_bytes", default=DEFAULT_MAX_INPUT_BYTES, parse=int, metavar="BYTES", group="input",
           range=Range(1, 10_000_000_000, zero="disables", whole=True),  # an input is read whole into memory
           help="refuse any input file larger than this, from the size the listing reports, before reading it "
                "(an error row at stage `read`)"),
    # --- crops (CropConfig) ---
    Option("aspect_ratios", default=",".join(map(ratio_label, _config_default(CropConfig, "aspect_ratios"))),
           parse=parse_ratios, metavar="W:H,...", group="crop", config="crop",
           values=f"W:H, WxH or W/H terms, comma-separated (at most {MAX_ASPECT_RATIOS})",
           help=f"comma-separated W:H ratios, one crop each, also written WxH (the crops folder's name) or W/H; "
                f"decimal terms become whole numbers (1.91:1 is 191:100, labelled so in the tables and written "
                f"to `crops/191x100/`); at most {MAX_ASPECT_RATIOS} ratios, each term a whole number "
                f"1..{MAX_RATIO_TERM}, each ratio within 1:{MAX_RATIO_SPREAD}..{MAX_RATIO_SPREAD}:1",
           flex=Flex("Aspect ratios", regexes=(f"^{_RATIO}(,{_RATIO})*$",))),
    # each rank is one more search and one more file per ratio; ranks past a few rarely exist (overlap rule)
    Option("candidates", default=_config_default(CropConfig, "candidates"), parse=int, metavar="N",
           group="crop", config="crop", range=Range(1, 10, whole=True),
           help="ranked crops per ratio (rank 0 = best, the only one by default); a rank k > 0 is the best window "
                "overlapping every better one by at most half (intersection over union) and is written to "
                "`<relpath>.rank<k>.<ext>`; fewer come back where the picture leaves no such room (a 16:9 crop "
                "of a 3:2 photo has almost no play)",
           flex=Flex("Ranked crops per ratio")),
    Option("min_scale", default=_config_default(CropConfig, "min_scale"), parse=float, metavar="S",
           group="crop", config="crop", range=Range(0, 1, low_open=True),  # a share of the largest window
           help="smallest crop tried, as a share of the largest window of the ratio (linear size); below 1, "
                "windows of scale 1.0, 0.9, ... >= S compete and a smaller one wins when it keeps nearly as much "
                "of the predicted attention (half the area wins when it loses under 5 points of "
                "`saliency_kept`: a small subject gets a tighter crop); never upscales"),
    Option("focus", metavar="TABLE", group="crop",
           help="CSV (UTF-8) or Parquet table (any filesystem) of regions the crops must contain, one row per "
                "image: columns source (the source URI, or its path relative to an input root), x, y and "
                "optionally width, height: numbers >= 0, in pixels of the upright picture (a region past the "
                "picture's edge is clamped to it); every ratio and rank of that image contains it. A relative "
                "path that names files under two input roots, two rows naming one file, or a bad value stop the "
                "run before any work. Read once when the job is built; a person's hint beats the model."),
    # --- output files (OutputConfig) ---
    Option("output", default=DEFAULT_OUTPUT, metavar="ROOT", group="output",
           help="output root (a local path, gs://... or s3://...): `crops/`, `metadata/`, `errors/` and "
                "`saliency/` are written under it",
           flex=Flex("Output root", regexes=(_GS_URI,), optional=False,
                     help="Where crops/, metadata/ and errors/ are written, e.g. gs://my-bucket/crops.")),
    Option("output_format", default=_config_default(OutputConfig, "output_format"), parse=parse_output_format,
           choices=OUTPUT_FORMATS, metavar="FORMAT", group="output", config="output",
           help="crop file format (`jpg`, in any case, is `jpeg`); `source` keeps JPEG, PNG and WebP sources in "
                "their format and writes others as PNG",
           flex=Flex("Crop format")),
    Option("jpeg_quality", default=_config_default(OutputConfig, "jpeg_quality"), parse=int, metavar="Q",
           group="output", config="output", range=Range(1, 100, whole=True),  # the encoders' own scale
           help="JPEG (and WebP) quality"),
    Option("max_output_side", default=_config_default(OutputConfig, "max_output_side"), parse=int,
           metavar="PIXELS", group="output", config="output",
           range=Range(1, 65_500, zero="keeps source resolution", whole=True),  # OpenCV's JPEG encoder's limit
           help="downscale crops so their longer side is at most this many pixels; never upscales",
           flex=Flex("Longest crop side")),
    Option("save_saliency", kind=SWITCH, default=_config_default(OutputConfig, "save_saliency"), group="output",
           config="output", help="also write each image's predicted log-density map to "
                                 "`ROOT/saliency/<relpath>.npy`"),
    Option("saliency_preview", kind=BOOL, default=_config_default(OutputConfig, "saliency_preview"),
           parse=parse_bool, metavar="BOOL", group="output", config="output",
           help="write a small 8-bit preview of each image's saliency map to `ROOT/saliency/<relpath>.png` (a few "
                "KB: the heat map of `gazecrop report`); changes no crop or metadata row"),
    # --- model ---
    Option("model", default="default", parse=parse_model, metavar="MODEL", group="model",
           values=f"{', '.join(MODEL_NAMES)} or a readout weights file",
           help="`default` (bundled weights), `fast` (the bundled fast model: pruned and distilled, about 16× "
                "faster on CPU at nearly the same quality, 5.9× end to end in `python -m gazecrop.tools.bench`, input short side "
                "128; model/README.md, \"Fast model\"), `tiny` (random test model) or a readout weights file "
                "(`*.weights.h5` from `python -m gazecrop.tools.train`); checked before any work",
           flex=Flex("Saliency model")),
    # a model batch holds every VGG16 activation of its images: 1024 already needs tens of GB
    Option("batch_size", default=16, parse=int, metavar="N", group="model", range=Range(1, 1024, whole=True),
           help="largest number of images per model call",
           flex=Flex("Images per model call")),
    # --- run ---
    Option("incremental", kind=BOOL, default=False, parse=parse_bool, metavar="BOOL",
           help="crop only the files that are new or changed since the tables under ROOT were written, or that "
                "were made with another model or other crop settings; the tables are rewritten with one row set "
                "per image (the rows of skipped images are kept; a run killed halfway leaves the old tables "
                "intact); for nightly runs",
           flex=Flex("Only new or changed images")),
    Option("incremental_check", default="mtime", choices=INCREMENTAL_CHECKS, metavar="CHECK", needs="incremental",
           help="with --incremental, how a file is known to be unchanged: `mtime` compares the size and "
                "modification time the listing reports, and on gs:// the object generation (exact: every write "
                "makes a new one); `content` also reads each file without a generation (local, s3://) that "
                "looks unchanged and compares its SHA-256 with the table's `source_sha256` (a read of every such "
                "file, no decode or model call): it catches a rewrite that kept size and time "
                "(`cp --preserve=timestamps`, `touch -r`)"),
    Option("max_failure_ratio", default=DEFAULT_MAX_FAILURE_RATIO, parse=float, metavar="R",
           range=Range(0, 1),  # a share of the files processed
           help="the run fails (exit status 4, after writing both tables) when more than this share of the "
                "files it processed failed (with --incremental: not counting those skipped as unchanged, nor "
                "those retried because they had failed before, so a corrupt upload retried every night fails no "
                "night); 0 fails on any failure, 1 never"),
    Option("progress", default="auto", choices=("auto", "on", "off"), metavar="WHEN",
           help="a progress bar on stderr while a local run works: `auto` shows it when stderr is a terminal "
                "and the runner is local"),
    Option("verbose", kind=SWITCH, default=False,
           help="leave TensorFlow's, Beam's and the workers' own messages on the console (by default they go "
                "to a log file, named when the run fails; the environment variable GAZECROP_VERBOSE=1 does the "
                "same)"),
    # --- streaming (pipeline/stream.py). Listings, windows and model watches more often than every second
    # cost more than they give; one day is the longest wait that is not a mistake. ---
    Option("streaming", kind=SWITCH, default=False, group="streaming",
           help="run as a streaming job: crop images as they arrive, from --input_subscription or from files "
                "appearing under --input, until stopped (also passed on to Beam, whose option it is too)"),
    Option("input_subscription", metavar="projects/P/subscriptions/S", group="streaming", needs="streaming",
           help="Pub/Sub subscription of GCS object notifications; OBJECT_FINALIZE events are cropped, other "
                "events ignored"),
    Option("input_prefix", metavar="gs://BUCKET/PREFIX/", group="streaming", needs="streaming",
           shown_default="(every notified object, named `<bucket>/<object>`)",
           help="with --input_subscription: crop only objects under this prefix, named relative to it"),
    Option("catch_up", kind=BOOL, parse=parse_bool, metavar="BOOL", group="streaming", needs="streaming",
           shown_default="true with --input_prefix",
           help="with --input_prefix: at start, also list the prefix once and crop every image there that the "
                "tables under ROOT do not record yet (what a stopped run took from the subscription but never "
                "recorded)"),
    Option("poll_interval_secs", default=10.0, parse=float, metavar="S", group="streaming", needs="streaming",
           range=Range(1, 86_400), help="with --streaming --input: seconds between listings of the pattern"),
    Option("window_seconds", default=60.0, parse=float, metavar="S", group="streaming", needs="streaming",
           range=Range(1, 86_400),
           help="the tables are written per fixed window of this many seconds, as "
                "`ROOT/metadata/stream-<start>-<end>-<run id>-<shard>-of-<n>.parquet`"),
    Option("max_batch_duration_secs", default=2, parse=int, metavar="S", group="streaming", needs="streaming",
           range=Range(1, 600, whole=True), help="longest wait, in whole seconds, for a model batch to fill"),
    Option("watch_model_pattern", metavar="PATTERN", group="streaming", needs="streaming",
           help="swap in the newest readout weights file matching PATTERN that appears while the job runs (the "
                "model handler looks before a batch, at most every --watch_model_interval_secs); rows carry the "
                "new model's version from then on"),
    Option("watch_model_interval_secs", default=60.0, parse=float, metavar="S", group="streaming",
           needs="streaming", range=Range(1, 86_400), help="seconds between listings of --watch_model_pattern"),
    Option("streaming_duration_secs", default=0.0, parse=float, metavar="S", group="streaming", needs="streaming",
           range=Range(0, 31_536_000, low_open=True, zero="until Ctrl-C or cancelled"),  # up to a year
           help="stop after this many seconds, once what was received is written (tests, demos)"),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}

# Why each range: see the comment beside the option above.
RANGES: dict[str, Range] = {option.name: option.range for option in OPTIONS if option.range is not None}

# `gazecrop run`'s exit statuses (--help's epilog and docs/options.md).
EXIT_STATUSES = (
    (0, "done"),
    (1, "the run failed as a whole (the tables are the last finished run's)"),
    (2, "usage error (an unknown option, a bad value, a --model or --input_list that cannot be used, a --focus "
        "table), nothing done"),
    (3, "the inputs name no file, nothing done"),
    (4, "more than --max_failure_ratio of the files processed failed (both tables written; the summary says so)"),
    (75, "another run holds the output root's lock, nothing done"),
    (130, "interrupted (Ctrl-C): crops written so far are complete, rerun with --incremental to finish"),
)

DESCRIPTION = ("Crop images to aspect ratios, keeping what people look at. Options not listed here are Apache "
               "Beam pipeline options (--runner, --direct_num_workers, ...).")


def argparse_help(option: Option) -> str:
    """An option's --help text: its help, then its range and default (`range 1..10; default: 1`)."""
    default = option.default_text()
    if option.range is not None:
        suffix = f" (range {option.range}; default: {default})"
    elif default and option.kind != INPUTS:
        suffix = f" (default: {default})"
    else:
        suffix = ""
    return (option.help + suffix).replace("%", "%%")


# ----------------------------------------------------------------------------------------------
# docs/options.md
# ----------------------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _written(option: Option) -> str:
    """The option as a user writes it: `--candidates N`, `--incremental[=BOOL]`, `INPUT ... / --input ...`."""
    if option.kind == INPUTS:
        return f"`INPUT ...` / `--{option.name} {option.metavar} ...`"
    if option.kind == SWITCH:
        return f"`--{option.name}`"
    if option.kind == BOOL:
        return f"`--{option.name}[=BOOL]`"
    return f"`--{option.name} {option.metavar or option.name.upper()}`"


def markdown() -> str:
    """docs/options.md: every option by group, with its default, what it accepts and what it does."""
    lines = ["# `gazecrop run` options", "",
             "<!-- Written by `python -m gazecrop.pipeline.options --markdown > docs/options.md` from the option "
             "table (pipeline/option_table.py); edit the table, not this file. -->", "",
             DESCRIPTION + " Every value is checked before any work: a bad one stops the run with one line "
                           "naming the option and what it accepts (exit status 2).", ""]
    for group, title in GROUPS.items():
        lines += [f"## {title}", ""]
        if group in GROUP_NOTES:
            lines += [GROUP_NOTES[group][0].upper() + GROUP_NOTES[group][1:] + ".", ""]
        lines += ["| option | default | accepts | meaning |", "| --- | --- | --- | --- |"]
        for option in OPTIONS:
            if option.group == group:
                default = option.default_text()
                if default and not default.startswith("(") and " " not in default:
                    default = f"`{default}`"  # a value, not a sentence
                lines.append(f"| {_written(option)} | {_cell(default)} | {_cell(option.accepts())} "
                             f"| {_cell(option.help)} |")
        lines.append("")
    lines += ["## Exit status", "", "| status | meaning |", "| --- | --- |"]
    lines += [f"| {code} | {_cell(meaning)} |" for code, meaning in EXIT_STATUSES]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# launch/flex_template_metadata.json
# ----------------------------------------------------------------------------------------------

FLEX_TEMPLATE = {
    "name": "gazecrop",
    "description": "Crop every image of a catalog to the requested aspect ratios, keeping what people look at "
                   "(DeepGaze saliency on GPU workers). Writes crops, a Parquet metadata table and an errors "
                   "table under the output root.",
    "streaming": False,
    "supportsAtLeastOnce": False,
    "supportsExactlyOnce": True,
    "defaultStreamingMode": "UNSPECIFIED",
}


def flex_regexes(option: Option) -> tuple[str, ...]:
    """The regexes the Dataflow console checks a parameter against: the table's own, else derived."""
    if option.flex.regexes is not None:
        return option.flex.regexes
    if option.choices:
        return (f"^({'|'.join(option.choices)})$",)
    if option.kind == BOOL:
        return ("^(true|false)$",)
    if option.range is not None and option.range.whole:
        return ("^[0-9]+$",) if option.range.zero or option.range.low < 1 else ("^[1-9][0-9]*$",)
    return ()


def flex_parameter(option: Option) -> dict:
    """One Flex Template parameter (gcloud's metadata format)."""
    text = (option.flex.help or option.help[0].upper() + option.help[1:] + ".").replace("`", "")
    default = option.default_text()
    if option.flex.optional and default:
        text += f" Default: {default}."
    parameter = {"name": option.name, "label": option.flex.label, "helpText": text,
                 "isOptional": option.flex.optional}
    regexes = flex_regexes(option)
    if regexes:
        parameter["regexes"] = list(regexes)
    return parameter


def flex_template() -> str:
    """launch/flex_template_metadata.json: the template's description and its parameters, the options of
    the table that have a `flex` entry (each passed on as --name=value)."""
    metadata = {**FLEX_TEMPLATE,
                "parameters": [flex_parameter(option) for option in OPTIONS if option.flex is not None]}
    return json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"
