"""No leaks (issue 7, item 5): what an image carries never makes the pipeline open a URL or a local path,
and logs, metadata and error rows never carry the storage credentials.

* Images whose EXIF, XMP and ICC metadata name a URL on a loopback canary HTTP server and a local
  canary path (a FIFO: a process that opens it for reading blocks until a writer comes, so a watcher
  that tries to open the writer end without blocking catches any opener, native code included) are
  cropped like any other image, and neither canary is ever touched.
* A run against the loopback GCS server, whose credentials come from the metadata-server stub as the
  access token `emulator-token`, with a missing object and a broken file among its inputs: the token
  appears in no log record (at DEBUG), no printed line, no metadata row and no error row.
"""

from __future__ import annotations

import http.server
import io
import logging
import os
import threading

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import assert_accounted, read_tables, run_gazecrop

RATIOS = ["1:1", "16:9"]


class _Canary(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Canary.requests.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def canary_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Canary.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def canary_path(tmp_path):
    """A FIFO, and the list of times something opened it for reading (watched every 5 ms)."""
    fifo = tmp_path / "canary.fifo"
    os.mkfifo(fifo)
    opened, stop = [], threading.Event()

    def watch():
        while not stop.wait(0.005):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only while a reader has it open
            except OSError:
                continue
            opened.append(True)
            os.close(fd)  # the reader gets end-of-file

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield str(fifo), opened
    finally:
        stop.set()
        thread.join()


def _xmp(url: str, path: str) -> bytes:
    return (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
            f' xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:stRef="http://ns.adobe.com/xap/1.0/sType/ResourceRef#">'
            f'<rdf:Description rdf:about="{url}/xmp-about" xlink:href="{url}/xmp-href" stRef:filePath="{path}"/>'
            f'</rdf:RDF></x:xmpmeta><!DOCTYPE x [<!ENTITY e SYSTEM "{url}/xmp-entity"><!ENTITY f SYSTEM "file://{path}">]>'
            ).encode()


def _icc(url: str, path: str) -> bytes:
    """An ICC-profile-shaped block whose text names the canaries (not a valid profile: a decoder
    must ignore or refuse it, never follow it)."""
    text = f"desc {url}/icc file://{path}".encode()
    return (128 + len(text)).to_bytes(4, "big") + b"lcms" + b"\x02\x10\x00\x00mntrRGB XYZ " + bytes(104) + text


def _hostile_images(folder, url: str, path: str) -> list[str]:
    rng = np.random.default_rng(0)
    pixels = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010E] = f"{url}/exif-description"  # ImageDescription
    exif[0x013B] = f"file://{path}"  # Artist
    exif[0x0131] = path  # Software
    exif[0x0112] = 6  # Orientation: still honoured
    written = []
    jpeg = folder / "metadata.jpg"
    pixels.save(jpeg, "JPEG", exif=exif.tobytes(), icc_profile=_icc(url, path), xmp=_xmp(url, path))
    written.append(jpeg)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", _xmp(url, path).decode())
    info.add_text("Source", f"{url}/png-text")
    png = folder / "metadata.png"
    pixels.save(png, "PNG", pnginfo=info, exif=exif.tobytes(), icc_profile=_icc(url, path))
    written.append(png)
    webp = folder / "metadata.webp"
    pixels.save(webp, "WEBP", exif=exif.tobytes(), icc_profile=_icc(url, path), xmp=_xmp(url, path))
    written.append(webp)
    return sorted(str(p) for p in written)


def test_image_metadata_never_opens_a_url_or_a_path(tmp_path, canary_url, canary_path):
    path, opened = canary_path
    inputs_dir = tmp_path / "in"
    inputs_dir.mkdir()
    inputs = _hostile_images(inputs_dir, canary_url, path)
    for uri in inputs:  # the canaries really are in the files
        data = open(uri, "rb").read()
        assert canary_url.encode() in data and path.encode() in data
    run_gazecrop(["--input", f"{inputs_dir}/*", "--output", str(tmp_path / "out"),
                  "--aspect_ratios", ",".join(RATIOS), "--output_format", "source", "--save_saliency"])
    metadata, errors = read_tables(tmp_path / "out")
    assert_accounted(metadata, errors, inputs, RATIOS)
    assert errors == []
    jpeg_rows = [r for r in metadata if r["source_uri"].endswith(".jpg")]
    assert {(r["source_width"], r["source_height"]) for r in jpeg_rows} == {(96, 128)}  # EXIF 6 applied
    assert _Canary.requests == [] and opened == []
    for row in metadata:  # the crops carry none of the source's metadata
        data = open(row["output_uri"], "rb").read()
        assert canary_url.encode() not in data and path.encode() not in data


@pytest.mark.gcs
def test_credentials_stay_out_of_logs_and_tables(gcs_server, fixtures_dir, tmp_path, caplog, capsys):
    from apache_beam.io.filesystems import FileSystems
    from servers import MetadataStub
    uploads = {"in/kodim03.png": fixtures_dir / "kodak" / "kodim03.png",
               "in/broken.jpg": fixtures_dir / "corrupt" / "not_an_image.jpg"}
    for name, source in uploads.items():
        with FileSystems.create(f"{gcs_server}/{name}") as f:
            f.write(source.read_bytes())
    listed = [f"{gcs_server}/{name}" for name in uploads] + [f"{gcs_server}/in/missing.jpg"]
    input_list = tmp_path / "uris.txt"
    input_list.write_text("\n".join(listed) + "\n")
    out = f"{gcs_server}/out-no-leaks"

    caplog.set_level(logging.DEBUG)
    run_gazecrop(["--input_list", str(input_list), "--output", out, "--aspect_ratios", ",".join(RATIOS)])
    metadata, errors = read_tables(out)
    assert_accounted(metadata, errors, listed, RATIOS)
    assert sorted(e["error_type"] for e in errors) == ["FileNotFoundError", "NotAnImageError"]
    assert any(p.endswith("/token") for p in MetadataStub.paths)  # the token was handed out and used

    printed = capsys.readouterr()
    tables = io.StringIO()
    for row in metadata + errors:
        tables.write(repr(row))
    for text in (caplog.text, printed.out, printed.err, tables.getvalue()):
        assert "emulator-token" not in text and "Bearer" not in text
