"""The `gazecrop run` command line: gazecrop's own options, inputs, and Beam's pipeline options.

Every option is defined once, in the table `gazecrop.pipeline.option_table.OPTIONS`; this module derives
from it the parser (`build_parser`), the `RunOptions` fields and defaults and the checks (`check_values`),
and prints the files derived from it (`python -m gazecrop.pipeline.options --markdown`, `--flex_template`).

`parse(argv)` reads the options into a `RunOptions`; the inputs are `--input` values (several after
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
import os
import re
import sys
from typing import Any

from gazecrop.pipeline.beam_options import add_beam_options, beam_option_arity
from gazecrop.pipeline.option_table import (BOOL, DEFAULT_OUTPUT, DESCRIPTION, EXIT_STATUSES, GROUP_NOTES, GROUPS,
                                            INPUTS, MODEL_NAMES, OPTIONS, RANGES, SWITCH, Option, Range,
                                            argparse_help, flex_template, markdown)
from gazecrop.search import CropConfig
from gazecrop.transforms.read import absolute_uri
from gazecrop.transforms.write import OutputConfig

__all__ = ["DEFAULT_OUTPUT", "MODEL_NAMES", "OPTIONS", "RANGES", "Range", "RunOptions", "build_parser",
           "check_values", "parse"]

# Beam runner used when the command line names none. The DirectRunner first tries Beam's Prism runner,
# a binary it downloads; the FnApiRunner is what it falls back to, so naming it directly skips the
# download attempt (these machines may have no network). Both honour --direct_num_workers and
# --direct_running_mode.
DEFAULT_RUNNER = "FnApiRunner"
# Runner used with --streaming when the command line names none: the DirectRunner's bundle-based engine,
# the one local engine that streams (the FnApiRunner runs batch only; see pipeline/stream.py).
DEFAULT_STREAMING_RUNNER = "BundleBasedDirectRunner"


class _RunOptionsMethods:
    """What `RunOptions` adds to its fields (one per option of `OPTIONS`, with the option's default)."""

    def crop_config(self) -> CropConfig:
        """The crop search these options ask for (the options of the table with `config="crop"`)."""
        return CropConfig(**{o.name: getattr(self, o.name) for o in OPTIONS if o.config == "crop"})

    def output_config(self) -> OutputConfig:
        """How and where crops are written (the options with `config="output"`; the output root made
        absolute)."""
        return OutputConfig(root=absolute_uri(self.output),
                            **{o.name: getattr(self, o.name) for o in OPTIONS if o.config == "output"})

    @property
    def demo(self) -> bool:
        """No --input, --input_list or --input_subscription: crop the built-in demo images."""
        return not self.inputs and not self.input_list and not self.input_subscription


# gazecrop's own options: a frozen dataclass with one field per option of the table (`Option.dest`: the
# repeatable --input is `inputs`, a tuple), each defaulting to the option's default as parsed.
RunOptions = dataclasses.make_dataclass(
    "RunOptions", [(o.dest, Any, dataclasses.field(default=o.value)) for o in OPTIONS],
    bases=(_RunOptionsMethods,), frozen=True)
RunOptions.__module__ = __name__  # where pickle finds it (make_dataclass would leave "types")
RunOptions.__doc__ = "gazecrop's own options, one field per `gazecrop.pipeline.option_table.OPTIONS` entry."


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


def add_option(parser, option: Option) -> None:
    """Add one option of the table to `parser` (or to an argument group), as its `kind` is written."""
    flag, help_text = f"--{option.name}", argparse_help(option)
    if option.kind == INPUTS:
        parser.add_argument("paths", nargs="*", metavar="INPUT",
                            help=f"files, folders or patterns to crop, as {flag} takes them")
        parser.add_argument(flag, dest=option.dest, action="extend", nargs="+", default=[], metavar=option.metavar,
                            help=help_text)
    elif option.kind == SWITCH:
        parser.add_argument(flag, action="store_true", help=help_text)
    elif option.kind == BOOL:
        parser.add_argument(flag, nargs="?", const=True, default=option.default, type=option.parse,
                            metavar=option.metavar, help=help_text)
    else:
        parser.add_argument(flag, default=option.default, type=option.parse, metavar=option.metavar,
                            choices=None if option.parse else option.choices, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """`gazecrop run`'s parser: every option of the table, by group, then Beam's options as pass-throughs."""
    parser = _Parser(
        prog="gazecrop run", allow_abbrev=False, description=DESCRIPTION,
        epilog="exit status: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_STATUSES))
    for group, title in GROUPS.items():
        target = parser.add_argument_group(group, GROUP_NOTES[group]) if group in GROUP_NOTES else parser
        for option in OPTIONS:
            if option.group == group:
                add_option(target, option)
    add_beam_options(parser)
    return parser


# ----------------------------------------------------------------------------------------------
# Checks (before any work): every message names the option and ends `Received: --option=value`
# ----------------------------------------------------------------------------------------------

def check_values(known: argparse.Namespace) -> str | None:
    """What is wrong with the parsed values, as the one-line error to print, or None: a numeric option
    outside its range (nan and inf included), or an option given without the option it `needs`."""
    for option in OPTIONS:
        value = getattr(known, option.dest)
        if option.range is not None and value not in option.range:
            return f"--{option.name} accepts {option.range}. Received: --{option.name}={value}"
    for option in OPTIONS:
        value = getattr(known, option.dest)
        if option.needs and value != option.default and not getattr(known, option.needs):
            return (f"--{option.name} needs --{option.needs}. "
                    f"Received: --{option.name}={value} without --{option.needs}")
    return None


def _check_streaming(parser: argparse.ArgumentParser, known: argparse.Namespace) -> None:
    """--streaming's input rules (the options that need --streaming are refused without it by
    `check_values`)."""
    if not known.streaming:
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
    problem = check_values(known)
    if problem:
        parser.error(problem)
    _check_streaming(parser, known)
    if not any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        beam_args = [f"--runner={DEFAULT_STREAMING_RUNNER if known.streaming else DEFAULT_RUNNER}", *beam_args]
    if known.streaming:
        beam_args = [*beam_args, "--streaming"]  # Beam's own option too
    values = {field.name: getattr(known, field.name) for field in dataclasses.fields(RunOptions)}
    catch_up = bool(known.input_prefix) if known.catch_up is None else known.catch_up
    options = RunOptions(**{**values, "inputs": tuple(known.inputs), "catch_up": catch_up})
    return options, beam_args


def main(argv: list[str] | None = None) -> int:
    """`python -m gazecrop.pipeline.options --markdown > docs/options.md` and
    `... --flex_template > launch/flex_template_metadata.json`: the files derived from the option table."""
    what = argparse.ArgumentParser(prog="python -m gazecrop.pipeline.options",
                                   description="print a file derived from gazecrop run's option table")
    choice = what.add_mutually_exclusive_group(required=True)
    choice.add_argument("--markdown", action="store_true", help="docs/options.md")
    choice.add_argument("--flex_template", action="store_true", help="launch/flex_template_metadata.json")
    args = what.parse_args(argv)
    sys.stdout.write(markdown() if args.markdown else flex_template())
    return 0


if __name__ == "__main__":
    sys.exit(main())
