"""argparse `type=` functions shared by `gazecrop run` (pipeline/option_table.py) and `gazecrop crop`
(pipeline/crop_command.py). Beam-free, so that `gazecrop crop` loads no Beam. Each keeps the library
check's own message, which names what it accepts (argparse alone would print "invalid value")."""

from __future__ import annotations

import argparse

from gazecrop.model.card import check_model_spec
from gazecrop.search import parse_aspect_ratios


def parse_ratios(text: str):
    """--aspect_ratios: `parse_aspect_ratios`, its message kept."""
    try:
        return parse_aspect_ratios(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_model(text: str) -> str:
    """--model: one of `MODEL_NAMES`, or a readout weights file that exists (checked before any work)."""
    try:
        return check_model_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
