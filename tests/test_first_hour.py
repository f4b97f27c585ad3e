"""The first hour with `gazecrop` (issue 16): a quiet console, the input forms people type, one-line
errors before any work, the spellings people use, Ctrl-C, progress, --version/help, the --incremental
summary. Each test drives the real command: a subprocess `python -m gazecrop.pipeline.cli run ...` where the
console itself matters (what reaches stderr, a signal), in-process `gazecrop.pipeline.cli.main` elsewhere."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import read_tables
from gazecrop.pipeline.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]  # the checkout under test

# A line of gazecrop's own: its messages, the progress bar as logged, the summary's indented lines.
OWN_LINE = re.compile(r"^(gazecrop( run)?: |  \S)")
# Lines TensorFlow, absl and XLA print from C++ at start-up (one of them at least, on any machine).
TF_MARKERS = ("absl::InitializeLog", "cpu_feature_guard", "oneDNN", "cuInit", "cudart_stub")


@pytest.fixture(autouse=True)
def temporary_files_in_tmp_path(tmp_path, monkeypatch):
    """In-process runs write their log (and progress ticks) under tmp_path, never into /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def command_env(tmpdir: Path) -> dict:
    """The environment of a user's shell, with this checkout importable and temporary files (the run's
    log among them) in `tmpdir`."""
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)}
    env.pop("GAZECROP_VERBOSE", None)
    return env


def gazecrop(*argv: str, tmpdir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m gazecrop.pipeline.cli ARGV` in a process of its own, as a user's shell runs it."""
    return subprocess.run([sys.executable, "-m", "gazecrop.pipeline.cli", *argv], cwd=REPO, env=command_env(tmpdir),
                          text=True, capture_output=True, timeout=timeout)


def copy_photos(fixtures_dir: Path, folder: Path,
                names=("kodim01.png", "kodim02.png", "kodim03.png")) -> list[Path]:
    """Copies of Kodak fixture photos in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(fixtures_dir / "kodak" / name, folder / name)) for name in names]


def cropped_sources(root: Path) -> set[str]:
    metadata, _ = read_tables(root)
    return {os.path.basename(row["source_uri"]) for row in metadata}


# --- 1. Noise, 2. positional inputs, 7. start-up messages -----------------------------------------

def test_an_ordinary_run_prints_only_gazecrop_lines_and_verbose_shows_the_rest(fixtures_dir, tmp_path):
    photos = copy_photos(fixtures_dir, tmp_path / "photos")
    quiet = gazecrop("run", *map(str, photos), "--output", str(tmp_path / "out"), "--model", "tiny",
                     "--aspect_ratios", "1:1", "--progress", "on",
                     tmpdir=tmp_path / "tmp")  # positional inputs, as the shell expands `photos/*.png`
    assert quiet.returncode == 0, quiet.stderr
    stderr_lines = quiet.stderr.splitlines()
    assert [line for line in stderr_lines if not OWN_LINE.match(line)] == []
    assert "gazecrop: loading the model (tiny)…" in stderr_lines  # says what happens at start-up
    assert any(line.startswith("gazecrop: [") and "3/3 images" in line for line in stderr_lines)  # the bar
    assert cropped_sources(tmp_path / "out") == {"kodim01.png", "kodim02.png", "kodim03.png"}
    assert f"next: gazecrop report {tmp_path / 'out'}" in quiet.stdout
    assert not list((tmp_path / "tmp").glob("gazecrop-run-*.log"))  # a run that succeeded leaves no log

    verbose = gazecrop("run", "--input", *map(str, photos), "--output", str(tmp_path / "out2"),
                       "--model", "tiny", "--aspect_ratios", "1:1", "--verbose", tmpdir=tmp_path / "tmp")
    assert verbose.returncode == 0, verbose.stderr
    assert any(marker in verbose.stderr for marker in TF_MARKERS), verbose.stderr
    assert cropped_sources(tmp_path / "out2") == {"kodim01.png", "kodim02.png", "kodim03.png"}


# --- 2. Inputs ----------------------------------------------------------------------------------

def test_several_paths_after_one_input_and_a_folder_recursively(fixtures_dir, tmp_path, capsys):
    photos = copy_photos(fixtures_dir, tmp_path / "photos")
    status = cli_main(["run", "--input", *map(str, photos), "--output", str(tmp_path / "out"),
                       "--model", "tiny", "--aspect_ratios", "1:1"])
    assert status == 0
    assert cropped_sources(tmp_path / "out") == {"kodim01.png", "kodim02.png", "kodim03.png"}

    folder = tmp_path / "catalog"
    copy_photos(fixtures_dir, folder / "portrait", ("kodim04.png",))
    copy_photos(fixtures_dir, folder / "portrait" / "deeper", ("kodim05.png",))
    (folder / "portrait" / "notes.txt").write_text("not a picture")
    status = cli_main(["run", "--input", str(folder / "portrait"), "--input", str(photos[0]),
                       "--output", str(tmp_path / "out2"), "--model", "tiny", "--aspect_ratios", "1:1"])
    assert status == 0
    metadata, errors = read_tables(tmp_path / "out2")
    assert cropped_sources(tmp_path / "out2") == {"kodim04.png", "kodim05.png", "kodim01.png"}
    assert [os.path.basename(e["source_uri"]) for e in errors] == ["notes.txt"]  # every file of a folder
    assert any(row["output_uri"].count("/deeper/") for row in metadata)  # named relative to the folder


def test_a_pattern_or_folder_that_matches_nothing_stops_before_any_work(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for given in (str(tmp_path / "nosuch" / "*.jpg"), str(tmp_path / "empty")):
        assert cli_main(["run", given, "--output", str(tmp_path / "out"), "--model", "tiny"]) == 3
        assert "matches no file; nothing was done" in capsys.readouterr().err
    assert not (tmp_path / "out" / "metadata").exists()
    assert not list(tmp_path.glob("gazecrop-run-*.log"))  # nothing in it to act on: removed


# --- 3. Unknown options, 4. errors before work ---------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["--foo", "bar"], "unknown option --foo: `gazecrop run --help` lists gazecrop's options"),
    (["--aspect_ratio", "1:1"], "unknown option --aspect_ratio: did you mean --aspect_ratios?"),
    (["--direct_num_worker", "2"], "unknown option --direct_num_worker: did you mean --direct_num_workers?"),
    (["--model", "fats"], "argument --model: expected default, fast, tiny or a readout weights file "
                          "(*.weights.h5) that exists (did you mean fast?). Received: 'fats'"),
    (["--output_format", "gif"], "argument --output_format: expected one of jpeg, png, webp, source (or jpg)"),
    (["--aspect_ratios", "16-9"], "expected WIDTH:HEIGHT such as 16:9, 16x9, 16/9 or 1.91:1"),
    (["--jpeg_quality", "0"], "--jpeg_quality accepts 1..100. Received: --jpeg_quality=0"),
])
def test_a_bad_option_is_one_line_exit_2_before_any_work(argv, expected, tmp_path, capsys):
    started = time.monotonic()
    assert cli_main(["run", *argv, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gazecrop run: error: ") and expected in err, err
    assert "usage:" not in err and "--incremental" not in err
    assert time.monotonic() - started < 5  # no model loaded, nothing listed
    assert not (tmp_path / "out").exists()


def test_a_model_or_input_list_that_cannot_be_used_is_one_line_exit_2(fixtures_dir, tmp_path, capsys):
    photos = copy_photos(fixtures_dir, tmp_path / "photos", ("kodim01.png",))
    not_weights = tmp_path / "readout.weights.h5"
    not_weights.write_text("not HDF5")
    for argv, expected in ((["--model", str(not_weights)], f"--model {not_weights} cannot be loaded:"),
                           (["--input_list", str(tmp_path / "nosuch.txt")],
                            f"--input_list {tmp_path / 'nosuch.txt'} cannot be read:")):
        assert cli_main(["run", str(photos[0]), *argv, "--output", str(tmp_path / "out")]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(err) == 1 and expected in err[0] and "Received: " in err[0], err
    assert not (tmp_path / "out" / "metadata").exists()


def test_beam_options_pass_through_and_inputs_are_not_taken_for_their_values():
    from gazecrop.pipeline.options import parse
    options, beam_args = parse(["a.jpg", "--project", "p", "b.jpg", "--save_main_session", "--input", "c.jpg",
                                "d.jpg", "--direct_num_workers=2"])
    assert options.inputs == ("c.jpg", "d.jpg", "a.jpg", "b.jpg")
    assert beam_args == ["--runner=FnApiRunner", "--project=p", "--save_main_session", "--direct_num_workers=2"]


# --- 5. Spellings --------------------------------------------------------------------------------

def test_ratio_and_format_spellings_people_type(fixtures_dir, tmp_path, capsys):
    photos = copy_photos(fixtures_dir, tmp_path / "photos", ("kodim01.png",))
    assert cli_main(["run", str(photos[0]), "--output", str(tmp_path / "out"), "--model", "tiny",
                     "--aspect_ratios", "1x1,16/9,1.91:1", "--output_format", "JPG"]) == 0
    metadata, _ = read_tables(tmp_path / "out")
    assert sorted(row["aspect_ratio"] for row in metadata) == ["16:9", "191:100", "1:1"]
    assert sorted(os.listdir(tmp_path / "out" / "crops")) == ["16x9", "191x100", "1x1"]
    assert all(row["output_uri"].endswith(".jpg") for row in metadata)


# --- 6. Ctrl-C -----------------------------------------------------------------------------------

def test_ctrl_c_during_a_run_is_one_line_and_exit_130(fixtures_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(100):  # enough work to still be cropping when the signal comes (hard links: no copies)
        for name in ("kodim01.png", "kodim02.png", "kodim03.png"):
            os.link(fixtures_dir / "kodak" / name, photos / f"{i:03d}-{name}")
    out = tmp_path / "out"
    env = command_env(tmp_path / "tmp")
    process = subprocess.Popen([sys.executable, "-m", "gazecrop.pipeline.cli", "run", str(photos), "--output", str(out),
                                "--model", "tiny", "--aspect_ratios", "1:1"], cwd=REPO, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not list((out / "crops" / "1x1").glob("*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    lines = stderr.splitlines()
    assert [line for line in lines if not OWN_LINE.match(line)] == [], stderr  # no traceback
    interrupted = [line for line in lines if line.startswith("gazecrop: interrupted")]
    assert len(interrupted) == 1 and "rerun the same command with --incremental" in interrupted[0]
    assert f"{out}/crops/" in interrupted[0]
    assert not (out / "_gazecrop.lock").exists()  # the lock is released
    log = [line for line in lines if "the full log" in line]
    assert len(log) == 1 and str(tmp_path / "tmp" / "gazecrop-run-") in log[0]  # where to find the rest


# --- 7. Progress ---------------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_rate_is_measured_from_the_first_image_and_redraws_leave_no_stale_characters():
    from gazecrop.pipeline.progress import MEASURED_AFTER, ProgressBar, RateMeter
    meter = RateMeter()
    assert meter.rate(0, 10.0) is None  # the model is loading: no rate, no ETA
    assert meter.rate(1, 20.0) is None  # the first image marks the start of the measure
    assert meter.rate(MEASURED_AFTER, 21.0) is None
    assert meter.rate(1 + MEASURED_AFTER, 22.0) == pytest.approx(MEASURED_AFTER / 2)  # not 4/22

    terminal = _Terminal()
    with ProgressBar(12, stream=terminal, interval=0.01) as bar:
        time.sleep(0.05)
    drawn = terminal.getvalue()
    assert drawn.startswith("\r[") and drawn.endswith("\x1b[K\n")
    assert all(part.endswith("\x1b[K") or part.endswith("\x1b[K\n") for part in drawn.split("\r")[1:])
    assert "ETA" not in drawn and bar.done() == 0


# --- 8. --version, help ---------------------------------------------------------------------------

def test_version_and_help(capsys):
    assert cli_main(["--version"]) == 0
    assert re.fullmatch(r"gazecrop \S+\n", capsys.readouterr().out)
    assert cli_main(["help"]) == 0
    assert "commands:" in capsys.readouterr().out
    assert cli_main(["help", "run"]) == 0
    assert "--aspect_ratios" in capsys.readouterr().out


# --- 9. The --incremental summary ------------------------------------------------------------------

def test_incremental_summary_says_what_this_run_did(fixtures_dir, tmp_path, capsys):
    copy_photos(fixtures_dir, tmp_path / "photos")
    argv = ["run", str(tmp_path / "photos"), "--output", str(tmp_path / "out"), "--model", "tiny",
            "--aspect_ratios", "1:1"]
    assert cli_main(argv) == 0
    capsys.readouterr()
    assert cli_main([*argv, "--incremental"]) == 0
    out = capsys.readouterr().out
    assert "gazecrop: processed 0 files: all 3 unchanged since the last run (--incremental)" in out
    assert "cropped 3 images" not in out.splitlines()[0]
    assert f"next: gazecrop report {tmp_path / 'out'}" in out


def test_verbose_by_option_or_environment(monkeypatch):
    from gazecrop.pipeline.console import wants_verbose
    monkeypatch.delenv("GAZECROP_VERBOSE", raising=False)
    assert not wants_verbose(["--input", "a.jpg"]) and wants_verbose(["a.jpg", "--verbose"])
    monkeypatch.setenv("GAZECROP_VERBOSE", "1")
    assert wants_verbose(["a.jpg"])
