"""The `gazecrop` command: `gazecrop run|bench|report ...`."""

from __future__ import annotations

import sys

USAGE = """usage: gazecrop COMMAND [options]

commands:
  run      crop images (python -m pipeline.run); `gazecrop run --help` for its options
  bench    benchmark the pipeline against the model alone (python -m pipeline.bench)
  report   an HTML report of a run's output root (gazecrop report ROOT)
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        from pipeline.run import main as run_main
        return run_main(rest)
    if command == "bench":
        from pipeline.bench import main as bench_main
        return bench_main(rest)
    if command == "report":
        from pipeline.report import main as report_main
        return report_main(rest)
    print(f"gazecrop: unknown command {command!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
