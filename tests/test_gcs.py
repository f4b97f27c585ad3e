"""Object storage: read gs:// input, write gs:// crops and Parquet, against a real GCS API server.

The server is `gcp-storage-emulator` on 127.0.0.1 (STORAGE_EMULATOR_HOST). google-auth looks for
credentials on a cloud metadata server before anything else; GCE_METADATA_HOST / GCE_METADATA_IP point
it at a loopback stub that answers like one (a service account and a token the emulator ignores), so
no request leaves the machine and no credential is needed.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import read_tables, run_gazecrop

pytestmark = pytest.mark.gcs

BUCKET = "gazecrop-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _MetadataStub(http.server.BaseHTTPRequestHandler):
    """Answers google-auth's metadata-server requests: ping, service account, token, project."""

    paths: list[str] = []  # every path asked for, to check that credentials came from here

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        _MetadataStub.paths.append(path)
        parts = path.strip("/").split("/")
        body, status = None, 200
        if path == "/":
            body = "ok"
        elif parts[:4] == ["computeMetadata", "v1", "instance", "service-accounts"] and len(parts) == 5:
            body = json.dumps({"email": "emulator@gazecrop.invalid", "aliases": ["default"],
                               "scopes": ["https://www.googleapis.com/auth/cloud-platform"]})
        elif parts[:4] == ["computeMetadata", "v1", "instance", "service-accounts"] and parts[-1] == "token":
            body = json.dumps({"access_token": "emulator-token", "expires_in": 3600, "token_type": "Bearer"})
        elif path == "/computeMetadata/v1/project/project-id":
            body = "gazecrop-test"
        else:
            status, body = 404, "not found"
        data = body.encode()
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", "application/json" if body.startswith("{") else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"gcp-storage-emulator did not listen on port {port}")


@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory):
    """A GCS API server with bucket BUCKET and a metadata stub, both on loopback; stopped afterwards."""
    storage_port, metadata_port = _free_port(), _free_port()
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", metadata_port), _MetadataStub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    emulator = Path(sys.executable).with_name("gcp-storage-emulator")
    process = subprocess.Popen(
        [str(emulator), "start", "--host", "127.0.0.1", "--port", str(storage_port), "--in-memory",
         "--default-bucket", BUCKET, "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{storage_port}",
        "GCE_METADATA_HOST": f"127.0.0.1:{metadata_port}",
        "GCE_METADATA_IP": f"127.0.0.1:{metadata_port}",
        "CLOUDSDK_CONFIG": str(tmp_path_factory.mktemp("no-gcloud-config")),  # no user credentials
    }
    saved = {k: os.environ.get(k) for k in [*env, "GOOGLE_APPLICATION_CREDENTIALS"]}
    os.environ.update(env)
    os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    try:
        _wait_for_port(storage_port, process)
        yield f"gs://{BUCKET}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stub.shutdown()
        stub.server_close()


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
    assert {r["output_uri"] for r in metadata} >= {f"{root}/crops/1x1/exif/Portrait_6.jpg.jpg",
                                                     f"{root}/crops/16x9/kodak/kodim03.png.jpg"}
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
    assert any(p.endswith("/token") for p in _MetadataStub.paths)  # google-auth used the stub


def test_gcs_multi_processing_workers(gcs_server, gcs_inputs):
    root = f"{gcs_server}/out-multiprocessing"
    run_gazecrop(["--input", f"{gcs_server}/in/**", "--output", root, "--aspect_ratios", "1:1,16:9",
                  "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    _check_run(root, gcs_inputs)
