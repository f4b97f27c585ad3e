"""The pipeline on a real Flink engine: Beam's FlinkRunner with a local (embedded) Flink cluster, its
job server the jar that `launch/flink/build_job_server.sh` assembles, the SDK worker in LOOPBACK mode
(no Docker), with the options `launch/flink.sh` passes. The same fixture photos cropped on Flink and on
the FnApiRunner give the same tables and the same crop files.

`.ci/run` builds the jar first and passes its path as FLINK_JOB_SERVER_JAR; elsewhere the test uses the
jar left by an earlier build, and is skipped when there is none.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import assert_accounted, crop_name, read_tables, run_gazecrop

pytestmark = pytest.mark.flink

JAR = Path(__file__).resolve().parents[1] / "launch" / "flink" / "target" / "beam-flink-job-server.jar"
RATIOS = ["1:1", "16:9"]
# Columns that differ between two runs into two roots by construction.
RUN_SPECIFIC = ("processed_at", "output_uri")


@pytest.fixture(scope="module")
def job_server_jar() -> str:
    jar = os.environ.get("FLINK_JOB_SERVER_JAR") or str(JAR)
    if not os.path.isfile(jar):
        pytest.skip(f"no Flink job-server jar at {jar}: run launch/flink/build_job_server.sh")
    return jar


def _comparable(rows: list[dict], root: Path) -> list[tuple]:
    out = []
    for row in rows:
        kept = {k: v for k, v in row.items() if k not in RUN_SPECIFIC}
        if "output_uri" in row:
            kept["output"] = os.path.relpath(row["output_uri"], root)
        out.append(tuple(sorted(kept.items())))
    return sorted(out)


def test_fixture_photos_on_flink_match_the_direct_runner(fixtures_dir, tmp_path, job_server_jar):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for relpath in ("kodak/kodim03.png", "kodak/kodim07.png", "exif_orientation/Portrait_6.jpg",
                    "corrupt/not_an_image.jpg"):
        shutil.copy(fixtures_dir / relpath, inputs / Path(relpath).name)
    expected_inputs = sorted(str(p) for p in inputs.iterdir())
    common = ["--input", f"{inputs}/*", "--aspect_ratios", ",".join(RATIOS)]

    # The options launch/flink.sh passes for an embedded cluster, run in-process (python -m gazecrop.pipeline.run …).
    flink_args = _flink_sh({"FLINK_MASTER": "[local]", "JOB_SERVER_JAR": job_server_jar, "PARALLELISM": "2"},
                           *common, "--output", str(tmp_path / "flink"))[3:]
    assert {"--runner=FlinkRunner", "--flink_master=[local]", "--environment_type=LOOPBACK"} <= set(flink_args)
    flink_summary = run_gazecrop(flink_args)
    run_gazecrop([*common, "--output", str(tmp_path / "direct")])

    flink_metadata, flink_errors = read_tables(tmp_path / "flink")
    direct_metadata, direct_errors = read_tables(tmp_path / "direct")
    assert_accounted(flink_metadata, flink_errors, expected_inputs, RATIOS)
    assert (flink_summary.cropped, sum(flink_summary.failed.values())) == (3, 1)
    assert _comparable(flink_metadata, tmp_path / "flink") == _comparable(direct_metadata, tmp_path / "direct")
    assert _comparable(flink_errors, tmp_path / "flink") == _comparable(direct_errors, tmp_path / "direct")
    for row in flink_metadata:  # the same crop files, byte for byte
        twin = tmp_path / "direct" / os.path.relpath(row["output_uri"], tmp_path / "flink")
        assert Path(row["output_uri"]).read_bytes() == twin.read_bytes()


def _flink_sh(env: dict, *args: str) -> list[str]:
    script = Path(__file__).resolve().parents[1] / "launch" / "flink.sh"
    printed = subprocess.run(["bash", str(script), "--print", *args], env={**os.environ, **env},
                             capture_output=True, text=True, check=True).stdout
    return shlex.split(printed)


def test_flink_sh_submits_to_a_cluster_address_with_the_chosen_worker_environment():
    command = _flink_sh({"FLINK_MASTER": "jm.internal:8081", "IMAGE": "registry/gazecrop:1"},
                        "--input", "gs://b/in/*", "--output", "gs://b/out")
    assert command[1:3] == ["-m", "gazecrop.pipeline.run"]
    assert {"--runner=FlinkRunner", "--flink_master=jm.internal:8081", "--environment_type=DOCKER",
            "--environment_config=registry/gazecrop:1"} <= set(command)
    assert any(a.startswith("--flink_job_server_jar=") and a.endswith(".jar") for a in command)
    assert command[-4:] == ["--input", "gs://b/in/*", "--output", "gs://b/out"]

    command = _flink_sh({"FLINK_MASTER": "jm:8081", "ENVIRONMENT_TYPE": "EXTERNAL"})
    assert {"--environment_type=EXTERNAL", "--environment_config=localhost:50000"} <= set(command)
    assert "--environment_type=LOOPBACK" in _flink_sh({"FLINK_MASTER": "[local]"})


def test_streaming_file_drops_and_a_model_swap_on_flink(fixtures_dir, tmp_path, job_server_jar, tiny_info):
    """`--streaming --input` (fileio.MatchContinuously) on Flink's streaming mode: a file dropped
    while the job runs is cropped; a model uploaded to --watch_model_pattern while it runs makes every
    later crop, and its rows carry the new version."""
    import threading
    import time

    import pyarrow.parquet as pq

    from gazecrop.model import load_model
    from gazecrop.pipeline.options import parse
    from gazecrop.pipeline.stream import run_streaming
    from test_streaming import _second_model

    drop, models, out = tmp_path / "drop", tmp_path / "models", tmp_path / "out"
    drop.mkdir()
    models.mkdir()
    shutil.copy(fixtures_dir / "kodak" / "kodim03.png", drop / "first.png")

    def rows() -> dict[str, str]:
        found = {}
        for path in (out / "metadata").glob("stream-*.parquet"):
            for row in pq.read_table(path).to_pylist():
                found[Path(row["source_uri"]).name] = row["model_version"]
        return found

    swapped = []

    def upload_then_drop():
        deadline = time.monotonic() + 240
        while "first.png" not in rows() and time.monotonic() < deadline:
            time.sleep(0.5)
        swapped.append(_second_model(models))
        time.sleep(3)  # past --watch_model_interval_secs
        # Dropped whole, as a drop must be (a copy, then a rename): a listing may see a file being written.
        shutil.copy(fixtures_dir / "kodak" / "kodim05.png", drop / "second.png.partial")
        os.replace(drop / "second.png.partial", drop / "second.png")

    threading.Thread(target=upload_then_drop, daemon=True).start()
    options, beam_args = parse([
        "--streaming", "--input", f"{drop}/*.png", "--output", str(out), "--model", "tiny",
        "--aspect_ratios", "1:1", "--poll_interval_secs", "2", "--window_seconds", "2",
        "--watch_model_pattern", f"{models}/*.weights.h5", "--watch_model_interval_secs", "1",
        "--streaming_duration_secs", "240", "--runner=FlinkRunner", "--flink_master=[local]",
        f"--flink_job_server_jar={job_server_jar}", "--environment_type=LOOPBACK", "--parallelism=1"])
    summary = run_streaming(options, beam_args, stop_when=lambda _: "second.png" in rows())

    errors = [row for path in (out / "errors").glob("stream-*.parquet") for row in pq.read_table(path).to_pylist()]
    assert rows() == {"first.png": tiny_info.version, "second.png": load_model(swapped[0]).version}, errors
    assert summary.from_tables and summary.counters["images_cropped"] == 2
    assert (out / "crops" / "1x1" / crop_name(drop / "second.png", "second.png")).is_file()
