"""The `gazecrop` command: `gazecrop run|crop|report ...`, `gazecrop help [COMMAND]`, `gazecrop --version`."""

from __future__ import annotations

import importlib.metadata
import sys

USAGE = """usage: gazecrop COMMAND [options]

commands:
  run      crop images: gazecrop run photos/*.jpg [--output ROOT]; `gazecrop help run` for its options
  crop     print the crops of a few files, no Beam job: gazecrop crop photo.jpg [--json] [--output DIR]
  report   an HTML report of a run's output root (gazecrop report ROOT)
  help     this text; `gazecrop help COMMAND` for a command's options

gazecrop --version prints the installed version. Benchmarks and research commands are modules:
python -m gazecrop.tools.bench (the pipeline against the model alone), gazecrop.tools.train, ...
"""

COMMANDS = ("run", "crop", "report")

# Exit statuses of `gazecrop run` after which its log is kept and named: the run worked and went wrong
# (1 failed, 4 too many failures, 130 Ctrl-C). After the others its log holds nothing to act on.
KEEP_LOG_STATUSES = (1, 4, 130)


def version() -> str:
    """The installed gazecrop distribution's version ("unknown" when run from a checkout not installed)."""
    try:
        return importlib.metadata.version("gazecrop")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_command(rest: list[str]) -> int:
    """`gazecrop run`, its console quiet (pipeline/console.py) from before Beam and TensorFlow load;
    the log is kept and named after a run that went wrong (`KEEP_LOG_STATUSES`), else removed."""
    from gazecrop.pipeline import console
    with console.quiet(rest) as log_path:
        from gazecrop.pipeline.run import main as run_main
        try:
            status = run_main(rest)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
            status = exc.code if isinstance(exc.code, int) else 1
        hint = console.log_hint(log_path) if status in KEEP_LOG_STATUSES else None
        if hint:
            print(hint, file=sys.stderr)
    if status not in KEEP_LOG_STATUSES:
        console.discard_log(log_path)
    return status


def crop_command(rest: list[str]) -> int:
    """`gazecrop crop`, its console quiet as `gazecrop run`'s (TensorFlow's C++ lines go to a temporary
    log); each failed file is named on stderr, so the log is removed unless the command itself broke."""
    from gazecrop.pipeline import console
    with console.quiet(rest) as log_path:
        from gazecrop.pipeline.crop_command import main as crop_main
        try:
            status = crop_main(rest)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
            status = exc.code if isinstance(exc.code, int) else 1
    console.discard_log(log_path)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in ("--version", "version"):
        print(f"gazecrop {version()}")
        return 0
    if command == "help":
        if rest and rest[0] in COMMANDS:
            return main([rest[0], "--help"])
        print(USAGE, end="")
        return 0 if not rest else 2
    if command == "run":
        return run_command(rest)
    if command == "crop":
        return crop_command(rest)
    if command == "report":
        from gazecrop.pipeline.report import main as report_main
        return report_main(rest)
    print(f"gazecrop: unknown command {command!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
