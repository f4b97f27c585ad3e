"""launch/local.py: the local launcher's defaults and a run through it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from conftest import read_tables

_SPEC = importlib.util.spec_from_file_location("launch_local", Path(__file__).resolve().parents[1] / "launch" / "local.py")
local = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(local)


def test_local_args_add_multiprocessing_defaults_only_where_unset():
    assert local.local_args(["--input", "x"], cpus=4) == [
        "--input", "x", "--runner=FnApiRunner", "--direct_running_mode=multi_processing",
        "--direct_num_workers=4"]
    assert local.local_args(["--runner=DirectRunner", "--direct_num_workers", "1"], cpus=4) == [
        "--runner=DirectRunner", "--direct_num_workers", "1", "--direct_running_mode=multi_processing"]


def test_local_launcher_runs_with_worker_processes(fixtures_dir, tmp_path):
    code = local.main(["--input", str(fixtures_dir / "kodak" / "kodim1[0-3].png"), "--output", str(tmp_path),
                       "--model", "tiny", "--aspect_ratios", "1:1", "--direct_num_workers=2"])
    assert code == 0
    metadata, errors = read_tables(tmp_path)
    assert len(metadata) == 4 and errors == []
