"""Dangerous decoders (issue 14, item 6): the decode stage reads an explicit allow-list of raster formats.

Pillow, the fallback for formats OpenCV has no reader for, opens every format it knows; for EPS and
PostScript that means running Ghostscript on the file (untrusted PostScript executed on a worker). The
run below puts a canary `gs` first on the PATH of a real `gazecrop run` process: the canary writes a
file if anything starts it. EPS, PostScript and other non-raster formats Pillow identifies (MPEG video,
WMF vector drawings) must end as one `NotAnImageError` row at stage `decode` that names the format, with
no Ghostscript started; the raster formats OpenCV cannot read (TGA, ICO, PCX, SGI, QOI, DDS, ICNS, AVIF,
MPO) must still be cropped.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import assert_accounted, read_tables
from gazecrop.decode import NotAnImageError, decode_for_model, read_header
from gazecrop.transforms.inference import ModelInfo

ROOT = Path(__file__).resolve().parents[1]
INFO = ModelInfo(spec="tiny", version="0" * 12, short_side=224)

# A valid Encapsulated PostScript file and a PostScript document: both carry a bounding box, so Pillow
# identifies them and, asked for pixels, runs Ghostscript on them.
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 24\n%%EndComments\n"
       b"newpath 0 0 moveto 32 0 lineto 32 24 lineto closepath fill\nshowpage\n%%EOF\n")
POSTSCRIPT = (b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 32 24\n%%Pages: 1\n%%EndComments\n%%Page: 1 1\n"
              b"0 0 moveto 32 24 lineto stroke\nshowpage\n%%EOF\n")


def mpeg_header(width: int, height: int) -> bytes:
    """An MPEG-1 video sequence header (Pillow identifies it as an image of that size, with no pixels)."""
    return b"\x00\x00\x01\xb3" + bytes([width >> 4, (width & 15) << 4 | height >> 8, height & 255]) + bytes(9)


def wmf_header(width_twips: int, height_twips: int) -> bytes:
    """A placeable Windows Metafile header (a vector drawing: Pillow needs an outside handler for it)."""
    header = struct.pack("<IHhhhhHI", 0x9AC6CDD7, 0, 0, 0, width_twips, height_twips, 1440, 0)
    checksum = 0
    for word in struct.unpack("<10H", header):
        checksum ^= word
    return header + struct.pack("<H", checksum) + struct.pack("<HHHIHIH", 1, 9, 0x300, 12, 0, 3, 0) + bytes(6)


REFUSED = {"drawing.eps": ("EPS", EPS), "document.ps": ("EPS", POSTSCRIPT),
           "clip.mpg": ("MPEG", mpeg_header(64, 48)), "drawing.wmf": ("WMF", wmf_header(640, 480))}


def _photo(fixtures_dir: Path, size: tuple[int, int]) -> Image.Image:
    """A real photo (kodim23) at `size`, as a Pillow RGB image."""
    bgr = cv2.imread(str(fixtures_dir / "kodak" / "kodim23.png"))
    return Image.fromarray(cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))


def allowed_files(fixtures_dir: Path) -> dict[str, bytes]:
    """One file of each raster format OpenCV cannot read that Pillow can write here, as Pillow writes it."""
    photo = _photo(fixtures_dir, (96, 64))
    files = {}
    for name, fmt, kwargs in [("photo.tga", "TGA", {}), ("photo.ico", "ICO", {"sizes": [(64, 64)]}),
                              ("photo.pcx", "PCX", {}), ("photo.sgi", "SGI", {}), ("photo.qoi", "QOI", {}),
                              ("photo.dds", "DDS", {}), ("photo.icns", "ICNS", {}), ("photo.avif", "AVIF", {}),
                              ("stereo.mpo", "MPO", {"save_all": True, "append_images": [photo.rotate(180)]})]:
        buffer = io.BytesIO()
        photo.save(buffer, format=fmt, **kwargs)
        files[name] = buffer.getvalue()
    return files


def _canary_gs(folder: Path, marker: Path) -> Path:
    """A `gs` executable that records each start in `marker` (and does nothing else)."""
    folder.mkdir()
    gs = folder / "gs"
    gs.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 0\n')
    gs.chmod(gs.stat().st_mode | stat.S_IXUSR)
    return folder


def test_eps_postscript_and_other_non_raster_formats_are_refused_and_raster_formats_still_crop(
        fixtures_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    allowed = allowed_files(fixtures_dir)
    for name, data in {**allowed, **{n: d for n, (_, d) in REFUSED.items()}}.items():
        (inputs / name).write_bytes(data)
    marker = tmp_path / "gs-started.txt"
    canary = _canary_gs(tmp_path / "bin", marker)
    out = tmp_path / "out"
    env = dict(os.environ, PATH=f"{canary}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-m", "gazecrop.pipeline.run", "--input", f"{inputs}/*", "--output", str(out),
                           "--aspect_ratios", "1:1", "--model", "tiny", "--runner=FnApiRunner"],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert (out / "errors").is_dir(), done.stdout[-3000:]

    assert not marker.exists(), f"Ghostscript was started on an input: {marker.read_text()!r}"
    metadata, errors = read_tables(out)
    uris = sorted(str(inputs / name) for name in [*allowed, *REFUSED])
    assert_accounted(metadata, errors, uris, ["1:1"])
    failed = {Path(row["source_uri"]).name: row for row in errors}
    assert sorted(failed) == sorted(REFUSED), failed
    for name, (fmt, _) in REFUSED.items():
        row = failed[name]
        assert (row["stage"], row["error_type"]) == ("decode", "NotAnImageError"), row
        assert f"{fmt} files are refused" in row["message"] and "Received:" in row["message"], row
    for row in metadata:
        with Image.open(io.BytesIO(allowed[Path(row["source_uri"]).name])) as image:
            assert (row["source_width"], row["source_height"]) == image.size, row
        assert Path(row["output_uri"]).is_file()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_formats_are_named_before_any_pixel_is_read(name):
    fmt, data = REFUSED[name]
    with pytest.raises(NotAnImageError, match=f"{fmt} files are refused.*Received: a {fmt} file"):
        read_header(data)
    with pytest.raises(NotAnImageError):
        decode_for_model(data, input_size=INFO.input_size)


def test_every_allowed_format_opencv_cannot_read_decodes(fixtures_dir):
    from gazecrop.decode import ALLOWED_FORMATS
    for name, data in allowed_files(fixtures_dir).items():
        header = read_header(data)
        assert header.format in ALLOWED_FORMATS, name
        model_input = decode_for_model(data, input_size=INFO.input_size)
        assert (model_input.source_width, model_input.source_height) == (header.width, header.height), name
        assert model_input.pixels.dtype == np.uint8 and model_input.pixels.shape[2] == 3, name
