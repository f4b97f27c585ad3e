"""One definition per option (issue 15): the parser, RunOptions, the checks, docs/options.md and the Flex
Template's parameters all come from `gazecrop.pipeline.option_table.OPTIONS`, and the files derived from it
are what it gives today (so the docs cannot drift from the command)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from gazecrop.pipeline.option_table import (BOOL, OPTIONS, RANGES, flex_regexes, flex_template, markdown)
from gazecrop.pipeline.options import RunOptions, build_parser, parse
from gazecrop.search import CropConfig
from gazecrop.transforms.read import absolute_uri
from gazecrop.transforms.write import OutputConfig

REPO = Path(__file__).resolve().parents[1]
REGENERATE = ("python -m gazecrop.pipeline.options --markdown > docs/options.md; "
              "python -m gazecrop.pipeline.options --flex_template > launch/flex_template_metadata.json")

# Every default as it was before the table (outputs must stay byte-identical: a default that moves is a
# new crop).
DEFAULTS_BEFORE = {
    "inputs": (), "input_list": None, "output": "gazecrop-out", "aspect_ratios": ((1, 1), (16, 9), (9, 16), (4, 5)),
    "output_format": "jpeg", "jpeg_quality": 90, "max_output_side": 0, "model": "default", "batch_size": 16,
    "max_megapixels": 200.0, "max_input_bytes": 200_000_000, "save_saliency": False, "saliency_preview": True,
    "candidates": 1, "min_scale": 1.0, "focus": None, "incremental": False, "max_failure_ratio": 0.5,
    "incremental_check": "mtime", "progress": "auto", "verbose": False, "streaming": False,
    "input_subscription": None, "input_prefix": None, "catch_up": False, "poll_interval_secs": 10.0,
    "window_seconds": 60.0, "max_batch_duration_secs": 2, "watch_model_pattern": None,
    "watch_model_interval_secs": 60.0, "streaming_duration_secs": 0.0,
}


def test_derived_files_are_what_the_table_gives():
    assert (REPO / "docs" / "options.md").read_text() == markdown(), f"regenerate: {REGENERATE}"
    assert (REPO / "launch" / "flex_template_metadata.json").read_text() == flex_template(), \
        f"regenerate: {REGENERATE}"


def test_every_parser_option_is_in_the_table_and_every_table_option_in_the_parser():
    ours = [a for a in build_parser()._actions
            if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
    flags = {flag for action in ours for flag in action.option_strings}
    assert flags == {f"--{option.name}" for option in OPTIONS}
    assert {a.dest for a in ours} == {option.dest for option in OPTIONS} | {"paths"}  # positional INPUTs
    assert [f.name for f in dataclasses.fields(RunOptions)] == [option.dest for option in OPTIONS]
    helps = {a.dest: a.help for a in ours}
    for option in OPTIONS:
        assert helps[option.dest].replace("%%", "%").startswith(option.help), option.name
        assert option.help in markdown(), option.name


def test_defaults_are_unchanged_and_the_configs_own():
    options, beam_args = parse([])
    assert dataclasses.asdict(options) == DEFAULTS_BEFORE
    assert beam_args == ["--runner=FnApiRunner"]
    assert options.crop_config() == CropConfig()
    assert options.output_config() == OutputConfig(root=absolute_uri("gazecrop-out"))
    defaults = {f.name: f.default for f in dataclasses.fields(RunOptions)}
    for option in OPTIONS:
        if option.config:
            config = {"crop": CropConfig, "output": OutputConfig}[option.config]
            field = next(f for f in dataclasses.fields(config) if f.name == option.name)
            assert defaults[option.name] == field.default == DEFAULTS_BEFORE[option.name], option.name


def _outside(option):
    """A value just outside the option's range, and nan."""
    r = option.range
    high = r.high * 10 if r.whole else r.high * 1.5
    return [str(int(high)) if r.whole else str(high), "nan" if not r.whole else "-1"]


def _context(option) -> list[str]:
    """What the option needs besides itself to get as far as the range check."""
    return ["--streaming", "--input", "in/*.jpg"] if option.group == "streaming" else []


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.range], ids=lambda o: o.name)
def test_range_errors_name_the_option_and_end_with_what_was_received(option, capsys):
    for value in _outside(option):
        with pytest.raises(SystemExit) as stopped:
            parse([*_context(option), f"--{option.name}", value])
        assert stopped.value.code == 2
        err = capsys.readouterr().err.strip()
        parsed = option.parse(value)
        assert err.endswith(f"--{option.name} accepts {option.range}. Received: --{option.name}={parsed}"), err
    for end in (option.range.low if not option.range.low_open else option.range.high, option.range.high):
        value = str(int(end)) if option.range.whole else str(end)
        options, _ = parse([*_context(option), f"--{option.name}", value])
        assert getattr(options, option.name) == option.parse(value)


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.needs], ids=lambda o: o.name)
def test_an_option_without_the_one_it_needs_is_refused(option, capsys):
    value = {"incremental_check": "content", "catch_up": "true"}.get(option.name)
    if value is None:
        value = "gs://b/p/" if option.range is None else str(option.range.high)
    with pytest.raises(SystemExit) as stopped:
        parse([f"--{option.name}={value}"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert f"--{option.name} needs --{option.needs}. Received: --{option.name}=" in err, err


def test_ranges_are_the_tables():
    assert RANGES == {o.name: o.range for o in OPTIONS if o.range}
    assert all(not math.isnan(r.low) for r in RANGES.values())


def test_spellings_kept():
    """The spellings people type, all through the table's parse functions."""
    options, beam_args = parse(["a.jpg", "--aspect_ratios", "1x1,16/9,1.91:1", "--output_format", "JPG",
                                "--incremental=false", "--saliency_preview", "--save_saliency",
                                "--input", "b.jpg", "c.jpg", "--direct_num_workers", "2"])
    assert options.inputs == ("b.jpg", "c.jpg", "a.jpg")
    assert options.aspect_ratios == ((1, 1), (16, 9), (191, 100))
    assert (options.output_format, options.incremental, options.saliency_preview, options.save_saliency) == \
        ("jpeg", False, True, True)
    assert beam_args == ["--runner=FnApiRunner", "--direct_num_workers=2"]


def test_flex_template_parameters_are_options_and_their_regexes_take_what_the_command_takes():
    metadata = json.loads(flex_template())
    by_name = {o.name: o for o in OPTIONS}
    examples = {"input": "gs://b/in/**/*.jpg", "output": "gs://b/out", "aspect_ratios": "1:1,16x9,1.91:1",
                "model": "fast", "output_format": "webp", "max_output_side": "0", "candidates": "3",
                "batch_size": "64", "incremental": "true"}
    for parameter in metadata["parameters"]:
        option = by_name[parameter["name"]]
        value = examples[option.name]
        for regex in parameter.get("regexes", []):
            assert re.match(regex, value), (regex, value)
        assert parameter.get("regexes", []) == list(flex_regexes(option))
        argv = [f"--{option.name}={value}"] if option.kind == BOOL else [f"--{option.name}", value]
        parse(argv)  # the command accepts it too
    assert {p["name"] for p in metadata["parameters"] if not p["isOptional"]} == {"input", "output"}
