"""Storage faults: the GCS server goes away in the middle of a run (issue 7, item 3).

The server is a real `gcp-storage-emulator` on loopback that keeps its objects on disk, so it can be
stopped and started again with them (tests/servers.py). The run either rides out the outage on the
storage client's retries, or fails with a plain message; either way no crop or table object at its final
name is truncated, and the next `--incremental` run completes the catalog with every image recorded
exactly once.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from conftest import assert_accounted, read_tables, run_gazecrop
from servers import gcs_emulator

pytestmark = pytest.mark.gcs

ROOT = Path(__file__).resolve().parents[1]
RATIOS = "1:1,16:9"


def _objects(prefix: str) -> list[str]:
    return [m.path for m in FileSystems.match([f"{prefix}/**"])[0].metadata_list]


def _check_final_objects(out: str) -> None:
    """Every crop at a final name is a whole JPEG (ends with the EOI marker); a table file, if any,
    reads whole."""
    for path in _objects(out):
        if path.endswith(".tmp") or "/_staging-" in path:
            continue
        with FileSystems.open(path) as f:
            data = f.read()
        if path.endswith(".jpg"):
            assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", path
        elif path.endswith(".parquet"):
            pq.read_table(pa.BufferReader(data))


def test_gcs_outage_mid_run_then_incremental_rerun_completes(fixtures_dir, tmp_path):
    data_dir = tmp_path / "gcs-data"
    data_dir.mkdir()
    with gcs_emulator(tmp_path / "no-gcloud-config", data_dir=data_dir) as server:
        bucket = server.bucket
        inputs = []
        for source in sorted((fixtures_dir / "kodak").glob("*.png"))[:12]:
            uri = f"{bucket}/in/{source.name}"
            with FileSystems.create(uri) as f:
                f.write(source.read_bytes())
            inputs.append(uri)
        out = f"{bucket}/out"
        command = [sys.executable, "-m", "gazecrop.pipeline.run", "--input", f"{bucket}/in/*", "--output", out,
                   "--aspect_ratios", RATIOS, "--model", "tiny", "--batch_size", "1", "--incremental",
                   "--runner=FnApiRunner"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not any("/crops/" in p for p in _objects(out)) and time.monotonic() < deadline:
                assert process.poll() is None, process.communicate()
                time.sleep(0.05)
            server.stop()  # the outage: connections refused
            time.sleep(3)
            server.start()  # same port, same objects
            stdout, stderr = process.communicate(timeout=400)
        finally:
            if process.poll() is None:
                process.kill()
        if process.returncode == 1:  # gave up: it must say so plainly, as its last words
            assert "gazecrop: the run failed:" in stderr and "rerun with --incremental" in stderr.splitlines()[-1]
            failed_first = None
        else:  # rode out the outage (exit 0, or 4 where most reads failed while the server was down):
            # every image recorded, as crops or as an error row that the next run retries
            first_metadata, first_errors = read_tables(out)
            assert_accounted(first_metadata, first_errors, inputs, RATIOS.split(","))
            failed_first = {e["source_uri"] for e in first_errors}
        _check_final_objects(out)

        summary = run_gazecrop(["--input", f"{bucket}/in/*", "--output", out, "--aspect_ratios", RATIOS,
                                "--incremental"])
        metadata, errors = read_tables(out)
        assert_accounted(metadata, errors, inputs, RATIOS.split(","))
        assert errors == []
        assert max(collections.Counter((r["source_uri"], r["aspect_ratio"]) for r in metadata).values()) == 1
        if failed_first is not None:  # only the first run's failures were processed again
            assert (summary.processed, summary.skipped) == (len(failed_first), 12 - len(failed_first))
        _check_final_objects(out)
        for row in metadata:
            assert FileSystems.exists(row["output_uri"])
