"""Decoder fuzzing (issue 7, item 1) and header limits (item 2): the decode stage never takes the worker
down, and an absurd header costs milliseconds and no memory.

The fuzz cases (tests/decode_fuzz.py: mutated images made from the fixtures by a seeded generator) are
decoded in a child process, so a crash in native code (OpenCV, libjpeg, libpng, libtiff, libwebp,
Pillow) fails this test and names the seed instead of killing pytest. For every case the child must
come back with pixels or a `DecodeError` (NotAnImageError, CorruptImageError, ImageTooLargeError: one
error row naming the reason), within a time and a memory bound.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gazecrop.decode import DecodeError, ImageTooLargeError, decode_for_model, decode_full, read_header
from gazecrop.transforms.inference import ModelInfo

HERE = Path(__file__).resolve().parent
CASES = int(os.environ.get("GAZECROP_FUZZ_CASES", "8000"))  # CI: 8,000 cases, ~30 s on 2 cores
CHILD_TIMEOUT_S = 240
SLOW_CASE_MS = 2000  # one ~128 px image: anything near this is a hang in the making
CASE_RSS_MB = 200  # the fuzz guard allows 2 MP; a case that grows the process more allocated past it
CLEAN = {"gazecrop.decode.NotAnImageError", "gazecrop.decode.CorruptImageError",
         "gazecrop.decode.ImageTooLargeError"}


def _run_child(fixtures: Path, first: int, count: int):
    env = dict(os.environ, OPENCV_LOG_LEVEL="OFF", TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / "decode_fuzz.py"), "--fixtures", str(fixtures), "--first", str(first),
             "--count", str(count)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=CHILD_TIMEOUT_S, env=env)
        return done.returncode, done.stdout, False
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out, True


def test_fuzzed_images_never_crash_or_hang_the_decoder(fixtures_dir):
    start = time.perf_counter()
    returncode, out, timed_out = _run_child(fixtures_dir, 0, CASES)
    started = [int(line.split()[1]) for line in out.splitlines() if line.startswith("S ")]
    ended = [line.split(" ", 5) for line in out.splitlines() if line.startswith("E ")]
    finished = {int(e[1]) for e in ended}
    unfinished = [s for s in started if s not in finished]
    repro = f"rerun: python tests/decode_fuzz.py --fixtures {fixtures_dir} --first SEED --count 1 --show"
    assert not timed_out, f"the decoder hung on seed {unfinished[-1:] or '?'} ({repro})"
    assert returncode == 0, (f"the decode child died (exit {returncode}) on seed {unfinished[-1:] or '?'}: "
                             f"a crash in native code ({repro})")
    assert len(ended) == CASES
    outcomes = Counter(e[2] for e in ended)
    unclean = [e for e in ended if e[2] != "ok" and e[2] not in CLEAN]
    assert not unclean, f"{len(unclean)} cases raised outside DecodeError, e.g. {unclean[:5]} ({repro})"
    slow = [e for e in ended if float(e[3]) > SLOW_CASE_MS]
    assert not slow, f"cases slower than {SLOW_CASE_MS} ms: {slow[:5]} ({repro})"
    heavy = [e for e in ended if float(e[4]) > CASE_RSS_MB]
    assert not heavy, f"cases that grew the process by over {CASE_RSS_MB} MB: {heavy[:5]} ({repro})"
    # The generator reaches every outcome: the test is not decoding only valid or only garbage files.
    assert all(outcomes[k] > CASES // 50 for k in CLEAN | {"ok"}), outcomes
    print(f"\n{CASES} fuzz cases in {time.perf_counter() - start:.1f} s: {dict(outcomes)}")


def test_fuzz_cases_are_reproducible(fixtures_dir):
    from decode_fuzz import build_sources, make_case
    sources = build_sources(fixtures_dir)
    assert [make_case(seed, sources) for seed in (0, 7, 1234)] == \
        [make_case(seed, sources) for seed in (0, 7, 1234)]


# --- absurd dimensions in otherwise valid headers: refused from the header, in milliseconds -------------

INFO = ModelInfo(spec="tiny", version="0" * 12, short_side=224)


def _png_with_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg_with_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_with_size(width: int, height: int, *, frame: bool) -> bytes:
    """A GIF whose logical screen (frame=False) or first frame's extent (frame=True, with the 'restore to
    background' disposal that makes Pillow allocate the extent on open) declares width x height."""
    buffer = io.BytesIO()
    Image.new("P", (16, 16), 1).save(buffer, format="GIF", disposal=2)
    data = bytearray(buffer.getvalue())
    if frame:
        descriptor = data.index(b"\x2c\x00\x00\x00\x00")
        data[descriptor + 5:descriptor + 9] = struct.pack("<HH", width, height)
    else:
        data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _webp_with_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 1
    Image.new("RGB", (16, 16), "red").save(buffer, format="WEBP", exif=exif.tobytes())  # VP8X container
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"VP8X"
    data[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


def _tiff_with_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack("<HH", data[entry:entry + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            data[entry + 2:entry + 12] = struct.pack("<HII", 4, 1, value)  # LONG
    return bytes(data)


def _bmp_with_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="BMP")
    data = bytearray(buffer.getvalue())
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


ABSURD = {
    "png 65535x65535": _png_with_size(65535, 65535),
    "png 2^31-1 x 2^31-1": _png_with_size(2**31 - 1, 2**31 - 1),
    "jpeg 65500x65500": _jpeg_with_size(65500, 65500),
    "gif screen 65535x65535": _gif_with_size(65535, 65535, frame=False),
    "gif frame extent 65535x65535": _gif_with_size(65535, 65535, frame=True),
    "webp canvas 16384x16384": _webp_with_size(16384, 16384),  # libwebp: canvas != frame, CorruptImageError
    "tiff 100000x100000": _tiff_with_size(100_000, 100_000),
    "bmp 60000x60000": _bmp_with_size(60_000, 60_000),
}


@pytest.mark.parametrize("name", sorted(ABSURD))
def test_absurd_dimensions_are_refused_from_the_header_in_milliseconds(name):
    data = ABSURD[name]
    expected = DecodeError if name.startswith("webp") else ImageTooLargeError
    for decode in (lambda: decode_for_model(data, input_size=INFO.input_size), lambda: decode_full(data)):
        with pytest.raises(expected):
            decode()  # warm (Pillow plugin registration, imports)
        tracemalloc.start()
        start = time.perf_counter()
        with pytest.raises(expected):
            decode()
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < 0.05, f"{name}: {elapsed * 1000:.1f} ms"
        assert peak < 1_000_000, f"{name}: {peak} bytes allocated"


def test_a_gif_frame_larger_than_its_screen_is_refused_before_pillow_allocates_it():
    """Pillow allocates a GIF's first-frame extent while opening it; its guard runs at the user's limit
    (without it, this 60-byte file took seconds and 4 GB before our own header check ran)."""
    data = _gif_with_size(65535, 65535, frame=True)
    with pytest.raises(ImageTooLargeError, match="GIF header declares 4294.8 megapixels"):
        read_header(data)
    small = _gif_with_size(300, 200, frame=True)  # within the limit: read, and decoded or refused cleanly
    assert (read_header(small).width, read_header(small).height) == (300, 200)
    assert read_header(small, max_megapixels=0).width == 300  # 0 disables the guard, as for check_size
    with pytest.raises(ImageTooLargeError, match="over --max_megapixels=0.05"):
        read_header(small, max_megapixels=0.05)


def test_the_writer_guard_follows_the_users_limit_above_the_default():
    """Pillow's guard is the caller's --max_megapixels, not a fixed one: 300 MP passes with a 400 MP limit."""
    header = read_header(_png_with_size(20_000, 15_000), max_megapixels=400)
    assert (header.width, header.height) == (20_000, 15_000)
    assert np.isclose(header.megapixels, 300)
