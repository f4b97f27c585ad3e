"""Beam's own pipeline options, as Beam itself knows them, so `gazecrop run` can tell them from typos.

Every `PipelineOptions` subclass registers its arguments in `_add_argparse_args`; Beam builds one parser
from all of them (`PipelineOptions.get_all_options`) and silently discards what none of them knows. We
build the same parser once, and add each of its options to gazecrop's parser as a pass-through: argparse
then knows how many values each Beam option takes (so `--project p photo.jpg` keeps `p` with `--project`
and `photo.jpg` as an input), and whatever no parser knows is refused with a suggestion.
"""

from __future__ import annotations

import argparse
import functools

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

# argparse actions that take no value on the command line.
_NO_VALUE_ACTIONS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
                     argparse._CountAction)


@functools.lru_cache(maxsize=1)
def beam_option_arity() -> dict[str, object]:
    """`{'--runner': None, '--save_main_session': 0, ...}`: every Beam option string and its argparse
    `nargs` (0: a switch), from the parser Beam itself builds out of every `PipelineOptions` subclass."""
    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    arity: dict[str, object] = {}
    for action in parser._actions:
        nargs = 0 if isinstance(action, _NO_VALUE_ACTIONS) else action.nargs
        for flag in action.option_strings:
            if flag.startswith("--"):
                arity[flag] = nargs
    return arity


class _PassToBeam(argparse.Action):
    """Keeps a Beam option in `namespace.beam_args`, in order: `--flag=value` for a one-value option (a
    value that starts with '-' stays its value), `--flag` for a switch, `--flag v1 v2` otherwise."""

    def __call__(self, parser, namespace, values, option_string=None):
        if self.nargs is None:
            written = [f"{option_string}={values}"]
        else:
            values = [] if values is None else values if isinstance(values, list) else [values]
            written = [option_string, *map(str, values)]
        namespace.beam_args = [*getattr(namespace, "beam_args", []), *written]


def add_beam_options(parser: argparse.ArgumentParser) -> None:
    """Add every Beam option that gazecrop's parser does not define itself, as a hidden pass-through
    (`namespace.beam_args` holds them as written)."""
    ours = {flag for action in parser._actions for flag in action.option_strings}
    parser.set_defaults(beam_args=[])
    for flag, nargs in sorted(beam_option_arity().items()):
        if flag not in ours:
            parser.add_argument(flag, action=_PassToBeam, nargs=nargs, dest="beam_pass_through",
                                help=argparse.SUPPRESS)
