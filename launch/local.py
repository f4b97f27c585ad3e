"""Local launcher: `gazecrop run` on this machine, using every core.

    python launch/local.py --input 'photos/**/*.jpg' --output out/ [gazecrop and Beam options]

Adds `--direct_running_mode=multi_processing --direct_num_workers=<CPU count>` (the FnApiRunner with one
SDK worker process per core; the model is loaded once and shared by them) unless the command line sets
its own runner or worker options. Dataflow and Flink launchers live beside this file.
"""

from __future__ import annotations

import os
import sys


def local_args(argv: list[str], cpus: int | None = None) -> list[str]:
    """`argv` plus the multi-process DirectRunner options it does not set itself."""
    cpus = cpus or os.cpu_count() or 1

    def given(name: str) -> bool:
        return any(a == name or a.startswith(name + "=") for a in argv)

    extra = []
    if not given("--runner"):
        extra.append("--runner=FnApiRunner")
    if not given("--direct_running_mode"):
        extra.append("--direct_running_mode=multi_processing")
    if not given("--direct_num_workers"):
        extra.append(f"--direct_num_workers={cpus}")
    return [*argv, *extra]


def main(argv: list[str] | None = None) -> int:
    from gazecrop.pipeline.run import main as run_main
    return run_main(local_args(sys.argv[1:] if argv is None else list(argv)))


if __name__ == "__main__":
    sys.exit(main())
