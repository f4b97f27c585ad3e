"""The progress bar of local runs (pipeline/progress.py) and the run's Beam counters."""

from __future__ import annotations

import shutil
import tempfile

from conftest import run_gazecrop
from gazecrop.pipeline.progress import render


def test_render():
    assert render(0, 10, 0.0, width=10) == "[..........] 0/10 images  0m00s"
    assert render(5, 10, 9.0, rate=2.5, width=10) == "[#####.....] 5/10 images  2.5/s  ETA 0m02s"
    assert render(10, 10, 4000.0, rate=0.5, width=10) == "[##########] 10/10 images  0.5/s  1h06m"


def test_progress_counts_every_input_across_worker_processes(fixtures_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the tick file goes
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("kodim01.png", "kodim02.png", "kodim03.png"):
        shutil.copy(fixtures_dir / "kodak" / name, inputs / name)
    shutil.copy(fixtures_dir / "corrupt" / "not_an_image.jpg", inputs / "bad.jpg")
    run_gazecrop(["--input", f"{inputs}/*", "--output", str(tmp_path / "out"), "--aspect_ratios", "1:1,16:9",
                  "--progress", "on", "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gazecrop: [")]
    assert lines and "] 4/4 images" in lines[-1]  # 3 cropped + 1 failed, ticked from two processes
    assert not list(tmp_path.glob("gazecrop-progress-*"))  # the tick file's folder is removed


def test_progress_auto_is_off_when_stderr_is_not_a_terminal(fixtures_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(fixtures_dir / "kodak" / "kodim01.png", inputs / "a.png")
    run_gazecrop(["--input", f"{inputs}/*", "--output", str(tmp_path / "out")])
    assert "images" not in capsys.readouterr().err


def test_progress_only_where_the_workers_share_this_machine():
    from apache_beam.options.pipeline_options import PipelineOptions

    from gazecrop.pipeline.options import parse
    from gazecrop.pipeline.run import shows_progress
    for argv, expected in ((["--progress", "on"], True),
                           (["--progress", "off"], False),
                           (["--progress", "on", "--runner=DataflowRunner"], False),
                           (["--progress", "on", "--runner=FlinkRunner", "--environment_type=LOOPBACK"], True),
                           (["--progress", "on", "--runner=FlinkRunner", "--environment_type=DOCKER"], False)):
        options, beam_args = parse(argv)
        assert shows_progress(options, PipelineOptions(beam_args)) is expected, argv
