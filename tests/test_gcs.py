"""Object storage: read gs:// input, write gs:// crops and Parquet, against a real GCS API server
(`gcp-storage-emulator` on 127.0.0.1 with a metadata-server stub: `tests/servers.py`)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import crop_name, read_tables, run_gazecrop
from servers import MetadataStub

pytestmark = pytest.mark.gcs


@pytest.fixture(scope="module")
def gcs_inputs(gcs_server, fixtures_dir):
    """A few fixture files uploaded under gs://BUCKET/in/ through Beam's FileSystems."""
    from apache_beam.io.filesystems import FileSystems
    files = {"in/kodak/kodim03.png": fixtures_dir / "kodak" / "kodim03.png",
             "in/exif/Portrait_6.jpg": fixtures_dir / "exif_orientation" / "Portrait_6.jpg",
             "in/bad/not_an_image.jpg": fixtures_dir / "corrupt" / "not_an_image.jpg"}
    for name, path in files.items():
        with FileSystems.create(f"{gcs_server}/{name}") as f:
            f.write(path.read_bytes())
    return sorted(f"{gcs_server}/{name}" for name in files)


def _check_run(root: str, inputs: list[str]) -> None:
    from apache_beam.io.filesystems import FileSystems
    metadata, errors = read_tables(root)
    assert sorted({r["source_uri"] for r in metadata} | {e["source_uri"] for e in errors}) == inputs
    assert [(e["source_uri"].rsplit("/", 1)[1], e["error_type"]) for e in errors] == \
        [("not_an_image.jpg", "NotAnImageError")]
    assert len(metadata) == 2 * 2
    portrait = [r for r in metadata if r["source_uri"].endswith("Portrait_6.jpg")]
    assert {(r["source_width"], r["source_height"]) for r in portrait} == {(1200, 1800)}
    sources = {r["source_uri"].split("/in/", 1)[1]: r["source_uri"] for r in metadata}  # relpath: URI
    assert {r["output_uri"] for r in metadata} >= {
        f"{root}/crops/1x1/{crop_name(sources['exif/Portrait_6.jpg'], 'exif/Portrait_6.jpg')}",
        f"{root}/crops/16x9/{crop_name(sources['kodak/kodim03.png'], 'kodak/kodim03.png')}"}
    for row in metadata:
        with FileSystems.open(row["output_uri"]) as f:
            crop = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
        assert crop.shape[:2] == (row["output_height"], row["output_width"])
    leftovers = [m.path for m in FileSystems.match([f"{root}/**"])[0].metadata_list if m.path.endswith(".tmp")]
    assert leftovers == []


def test_gcs_in_process(gcs_server, gcs_inputs):
    root = f"{gcs_server}/out-inprocess"
    run_gazecrop(["--input", f"{gcs_server}/in/**", "--output", root, "--aspect_ratios", "1:1,16:9"])
    _check_run(root, gcs_inputs)
    assert any(p.endswith("/token") for p in MetadataStub.paths)  # google-auth used the stub


def test_gcs_multi_processing_workers(gcs_server, gcs_inputs):
    root = f"{gcs_server}/out-multiprocessing"
    run_gazecrop(["--input", f"{gcs_server}/in/**", "--output", root, "--aspect_ratios", "1:1,16:9",
                  "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    _check_run(root, gcs_inputs)
