"""Real servers on loopback for the tests, each started by a context manager that stops it again.

* `gcs_emulator()`: a GCS API server (`gcp-storage-emulator`, from PyPI) with one bucket, plus a stub of
  the cloud metadata server. google-auth looks for credentials on a metadata server before anything
  else; GCE_METADATA_HOST / GCE_METADATA_IP point it at the stub, which answers like one (a service
  account and a token the emulator ignores), so no request leaves the machine and no credential is
  needed.
* `pubsub_emulator()`: Google's Pub/Sub emulator from the Cloud SDK (Java), with PUBSUB_EMULATOR_HOST
  set, for the streaming job's GCS notifications.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

BUCKET = "gazecrop-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MetadataStub(http.server.BaseHTTPRequestHandler):
    """Answers google-auth's metadata-server requests: ping, service account, token, project."""

    paths: list[str] = []  # every path asked for, to check that credentials came from here

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        MetadataStub.paths.append(path)
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


def wait_for_port(port: int, process: subprocess.Popen, name: str, timeout: float = 30.0) -> None:
    """Wait until `process` (the server `name`) listens on `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{name} did not listen on port {port}")


class GcsEmulator:
    """`gcp-storage-emulator` on 127.0.0.1:`port`, in memory, or storing objects on disk under `data_dir`
    (its working directory) so that it can be stopped and started again with its objects."""

    def __init__(self, port: int, data_dir: Path | None = None):
        self.port = port
        self._data_dir = data_dir
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        # tests/gcs_server.py: the emulator's own `main`, in memory without its index dump on every write.
        emulator = [sys.executable, str(Path(__file__).with_name("gcs_server.py"))]
        storage = [] if self._data_dir else ["--in-memory"]
        self._process = subprocess.Popen(
            [*emulator, "start", "--host", "127.0.0.1", "--port", str(self.port), *storage,
             "--default-bucket", BUCKET, "--quiet"],
            cwd=self._data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self._process, "gcp-storage-emulator")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


@contextlib.contextmanager
def gcs_emulator(config_dir: Path, data_dir: Path | None = None):
    """A GCS API server with bucket BUCKET and a metadata stub, both on loopback; stopped afterwards.
    Yields the `GcsEmulator` (its `bucket` attribute is `gs://BUCKET`)."""
    storage_port, metadata_port = free_port(), free_port()
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", metadata_port), MetadataStub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    server = GcsEmulator(storage_port, data_dir)
    env = {
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{storage_port}",
        "GCE_METADATA_HOST": f"127.0.0.1:{metadata_port}",
        "GCE_METADATA_IP": f"127.0.0.1:{metadata_port}",
        "CLOUDSDK_CONFIG": str(config_dir),  # no user credentials
    }
    saved = {k: os.environ.get(k) for k in [*env, "GOOGLE_APPLICATION_CREDENTIALS"]}
    os.environ.update(env)
    os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    try:
        server.start()
        server.bucket = f"gs://{BUCKET}"
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
        stub.shutdown()
        stub.server_close()


PUBSUB_EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")


@contextlib.contextmanager
def pubsub_emulator(data_dir: Path):
    """Google's Pub/Sub emulator (Java, from the Cloud SDK) on loopback, with PUBSUB_EMULATOR_HOST set
    for the google-cloud-pubsub clients (Beam's ReadFromPubSub included); yields "127.0.0.1:PORT".

    The emulator is a shell script that starts a JVM, so it runs in its own process group and the whole
    group is stopped afterwards (that group only: the processes this context manager started).
    """
    port = free_port()
    process = subprocess.Popen(
        [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}", f"--dir={data_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{port}"
    try:
        wait_for_port(port, process, "cloud-pubsub-emulator", timeout=60)
        yield f"127.0.0.1:{port}"
    finally:
        if saved is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
