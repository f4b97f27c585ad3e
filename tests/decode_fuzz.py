"""Decoder fuzzing: mutated images made from the real fixtures by a seeded generator, decoded by the
decode stage's plain functions in a child process (tests/test_decode_fuzz.py runs it).

Case `seed` is a pure function of the seed and the fixture files: rerun one with

    python tests/decode_fuzz.py --fixtures ../shared/data/fixtures --first SEED --count 1 --show

Sources (built in memory, never written): kodim01/kodim23 downscaled to ~128 px and re-encoded as JPEG
(baseline, progressive, EXIF orientation 6, CMYK, grayscale), PNG (RGB, RGBA, palette, 1-bit, 16-bit),
GIF, WebP (lossy, lossless), TIFF (8-bit, 16-bit), BMP, TGA, ICO, PPM; plus small fixture files as they
are (hopper JPEG/GIF/WebP, 1-bit PNG, RGBA PNG, and the corrupt/ files).

Mutations (one to three per case): bit flips (half of them in the first 512 bytes, where the headers
are), byte overwrites with boundary values, truncation, deletion / duplication / insertion of a chunk,
a header spliced onto another file's body, and absurd or zero dimensions written into otherwise valid
headers (JPEG SOFn, PNG IHDR with its CRC fixed or not, GIF logical screen and image descriptor, WebP
VP8X canvas / VP8 / VP8L sizes, BMP, TIFF ImageWidth/ImageLength).

The child prints one line per case: `S <seed>` before it, `E <seed> <outcome> <ms> <rss growth MB>`
after it (outcome: `ok` or the exception's class), flushed, so that when native code kills or hangs the
process the parent names the seed that did it.
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import struct
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Fuzzing guard: far above every (~128 px) source, so mutated headers that keep a plausible size are
# decoded, and far below what would make one case slow: a mutated size over it is refused from the header.
FUZZ_MAX_MEGAPIXELS = 2.0

_BIG_VALUES = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 127, 128, 129, 255, 256, 1000, 1023, 1024, 1025, 4095, 4096,
               16383, 16384, 32767, 32768, 65534, 65535, 65536, 100_000, 2**24 - 1, 2**31 - 1, 2**31, 2**32 - 1]


def _cv_encode(ext: str, image: np.ndarray, params=()) -> bytes:
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return buffer.tobytes()


def _pil_encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def build_sources(fixtures: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of every source image, in a fixed order."""
    sources = []
    for stem in ("kodim01", "kodim23"):
        bgr = cv2.imread(str(fixtures / "kodak" / f"{stem}.png"), cv2.IMREAD_COLOR)
        bgr = cv2.resize(bgr, (128, 85), interpolation=cv2.INTER_AREA)
        rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        exif = Image.Exif()
        exif[0x0112] = 6
        sources += [
            (f"{stem}.jpg", _cv_encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])),
            (f"{stem}-progressive.jpg", _pil_encode(rgb, "JPEG", progressive=True, quality=75)),
            (f"{stem}-exif6.jpg", _pil_encode(rgb, "JPEG", exif=exif.tobytes())),
            (f"{stem}-cmyk.jpg", _pil_encode(rgb.convert("CMYK"), "JPEG")),
            (f"{stem}-gray.jpg", _pil_encode(rgb.convert("L"), "JPEG")),
            (f"{stem}.png", _cv_encode(".png", bgr)),
            (f"{stem}-rgba.png", _pil_encode(rgb.convert("RGBA"), "PNG")),
            (f"{stem}-palette.png", _pil_encode(rgb.convert("P"), "PNG")),
            (f"{stem}-1bit.png", _pil_encode(rgb.convert("1"), "PNG")),
            (f"{stem}-16bit.png", _cv_encode(".png", bgr.astype(np.uint16) * 257)),
            (f"{stem}.gif", _pil_encode(rgb.convert("P"), "GIF")),
            (f"{stem}.webp", _cv_encode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, 70])),
            (f"{stem}-lossless.webp", _pil_encode(rgb, "WEBP", lossless=True)),
            (f"{stem}.tif", _pil_encode(rgb, "TIFF")),
            (f"{stem}-16bit.tif", _cv_encode(".tif", bgr.astype(np.uint16) * 257)),
            (f"{stem}.bmp", _cv_encode(".bmp", bgr)),
            (f"{stem}.tga", _pil_encode(rgb, "TGA")),
            (f"{stem}.ico", _pil_encode(rgb, "ICO", sizes=[(64, 64)])),
            (f"{stem}.ppm", _cv_encode(".ppm", bgr)),
        ]
    for relative in ("edge_cases/pillow_hopper.jpg", "edge_cases/pillow_hopper.gif",
                     "edge_cases/pillow_hopper.webp", "edge_cases/pillow_hopper_orientation_6.jpg",
                     "edge_cases/thumbor_1bit.png", "alpha_png/pillow_pil123rgba.png",
                     "alpha_png/thumbor_paletted-transparent.png"):
        sources.append((relative, (fixtures / relative).read_bytes()))
    for path in sorted((fixtures / "corrupt").iterdir()):
        if path.stat().st_size <= 100_000:
            sources.append((f"corrupt/{path.name}", path.read_bytes()))
    return sources


# --- mutations -------------------------------------------------------------------------------------

def _flip_bits(rng: random.Random, data: bytearray) -> str:
    if not data:
        return "flip(empty)"
    count = rng.choice([1, 1, 2, 4, 8, 32])
    limit = min(len(data), 512) if rng.random() < 0.5 else len(data)
    for _ in range(count):
        i = rng.randrange(limit)
        data[i] ^= 1 << rng.randrange(8)
    return f"flip{count}"


def _overwrite(rng: random.Random, data: bytearray) -> str:
    if not data:
        return "overwrite(empty)"
    for _ in range(rng.choice([1, 2, 4])):
        i = rng.randrange(min(len(data), 1024) if rng.random() < 0.6 else len(data))
        data[i] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE])
    return "overwrite"


def _truncate(rng: random.Random, data: bytearray) -> str:
    n = len(data)
    keep = rng.choice([rng.randrange(n + 1), rng.randrange(min(n, 64) + 1), n - rng.randrange(min(n, 64) + 1)])
    del data[keep:]
    return f"truncate{keep}"


def _chunk(rng: random.Random, data: bytearray) -> str:
    if len(data) < 2:
        return "chunk(short)"
    i = rng.randrange(len(data))
    size = rng.choice([1, 4, 16, 256, 4096])
    action = rng.choice(["delete", "duplicate", "insert"])
    if action == "delete":
        del data[i:i + size]
    elif action == "duplicate":
        data[i:i] = data[i:i + size]
    else:
        data[i:i] = bytes(rng.randrange(256) for _ in range(size))
    return f"chunk-{action}"


def _splice(rng: random.Random, data: bytearray, other: bytes) -> str:
    head = rng.choice([2, 4, 8, 12, 16, 32, 64, 128, 512])
    start = rng.randrange(len(other) + 1)
    data[:] = data[:head] + other[start:]
    return f"splice{head}"


def _u16be(data, i, v):
    data[i:i + 2] = struct.pack(">H", v & 0xFFFF)


def _dims_jpeg(rng, data) -> bool:
    sofs = [i for i in range(len(data) - 9) if data[i] == 0xFF and 0xC0 <= data[i + 1] <= 0xCF
            and data[i + 1] not in (0xC4, 0xC8, 0xCC)]
    if not sofs:
        return False
    i = rng.choice(sofs)
    which = rng.choice(["h", "w", "both"])
    if which in ("h", "both"):
        _u16be(data, i + 5, rng.choice(_BIG_VALUES))
    if which in ("w", "both"):
        _u16be(data, i + 7, rng.choice(_BIG_VALUES))
    return True


def _dims_png(rng, data) -> bool:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 33:
        return False
    for offset in rng.choice([(16,), (20,), (16, 20)]):
        data[offset:offset + 4] = struct.pack(">I", rng.choice(_BIG_VALUES) & 0xFFFFFFFF)
    if rng.random() < 0.8:  # a valid CRC, so that only the size is wrong
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return True


def _dims_gif(rng, data) -> bool:
    if data[:3] != b"GIF" or len(data) < 13:
        return False
    places = [6, 8]
    descriptors = [i for i in range(13, len(data) - 9) if data[i] == 0x2C]
    if descriptors:
        i = rng.choice(descriptors[:4])
        places += [i + 1, i + 3, i + 5, i + 7]  # left, top, width, height
    for offset in rng.sample(places, k=min(len(places), rng.choice([1, 2, 3]))):
        data[offset:offset + 2] = struct.pack("<H", rng.choice(_BIG_VALUES) & 0xFFFF)
    return True


def _dims_webp(rng, data) -> bool:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return False
    chunk = bytes(data[12:16])
    if chunk == b"VP8X":
        for offset in rng.choice([(24,), (27,), (24, 27)]):
            data[offset:offset + 3] = (rng.choice(_BIG_VALUES) & 0xFFFFFF).to_bytes(3, "little")
    elif chunk == b"VP8 ":
        for offset in rng.choice([(26,), (28,), (26, 28)]):
            data[offset:offset + 2] = struct.pack("<H", rng.choice(_BIG_VALUES) & 0x3FFF)
    elif chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        w, h = rng.choice(_BIG_VALUES) & 0x3FFF, rng.choice(_BIG_VALUES) & 0x3FFF
        bits = (bits & ~0xFFFFFFF) | w | (h << 14)
        data[21:25] = bits.to_bytes(4, "little")
    else:
        return False
    return True


def _dims_bmp(rng, data) -> bool:
    if data[:2] != b"BM" or len(data) < 26:
        return False
    for offset in rng.choice([(18,), (22,), (18, 22)]):
        value = rng.choice(_BIG_VALUES + [-1, -65535, -(2**31)])
        data[offset:offset + 4] = struct.pack("<i", max(-(2**31), min(2**31 - 1, value)))
    return True


def _dims_tiff(rng, data) -> bool:
    if data[:4] not in (b"II*\0", b"MM\0*") or len(data) < 8:
        return False
    endian = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(endian + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return False
    count = struct.unpack(endian + "H", data[ifd:ifd + 2])[0]
    found = False
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(data):
            break
        tag, kind = struct.unpack(endian + "HH", data[entry:entry + 4])
        if tag in (256, 257) and rng.random() < 0.7:
            value = rng.choice(_BIG_VALUES) & 0xFFFFFFFF
            if kind == 3:
                data[entry + 8:entry + 10] = struct.pack(endian + "H", value & 0xFFFF)
            else:
                data[entry + 8:entry + 12] = struct.pack(endian + "I", value)
            found = True
    return found


def _dims(rng: random.Random, data: bytearray) -> str:
    for name, mutate in (("jpeg", _dims_jpeg), ("png", _dims_png), ("gif", _dims_gif), ("webp", _dims_webp),
                         ("bmp", _dims_bmp), ("tiff", _dims_tiff)):
        if mutate(rng, data):
            return f"dims-{name}"
    return _overwrite(rng, data)


def make_case(seed: int, sources: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """(description, bytes) of fuzz case `seed`."""
    rng = random.Random(seed)
    name, original = sources[seed % len(sources)]
    data = bytearray(original)
    steps = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind = rng.choices(["flip", "overwrite", "truncate", "chunk", "splice", "dims"],
                           weights=[30, 10, 15, 10, 10, 25])[0]
        if kind == "flip":
            steps.append(_flip_bits(rng, data))
        elif kind == "overwrite":
            steps.append(_overwrite(rng, data))
        elif kind == "truncate":
            steps.append(_truncate(rng, data))
        elif kind == "chunk":
            steps.append(_chunk(rng, data))
        elif kind == "splice":
            steps.append(_splice(rng, data, rng.choice(sources)[1]))
        else:
            steps.append(_dims(rng, data))
    return f"{name} {'+'.join(steps)}", bytes(data)


# --- the child process -----------------------------------------------------------------------------

def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(fixtures: Path, first: int, count: int, show: bool = False) -> None:
    from gazecrop.decode import decode_for_model, decode_full
    from gazecrop.transforms.inference import ModelInfo

    info = ModelInfo(spec="tiny", version="0" * 12, short_side=224)
    sources = build_sources(fixtures)
    for source_name, data in sources:  # warm the decoders up, so RSS growth below is the case's own
        for decode in (lambda d: decode_for_model(d, input_size=info.input_size, max_megapixels=FUZZ_MAX_MEGAPIXELS),
                       lambda d: decode_full(d, max_megapixels=FUZZ_MAX_MEGAPIXELS)):
            try:
                decode(data)
            except Exception:  # noqa: BLE001 (the corrupt sources fail, as they should)
                pass
    out = sys.stdout
    for seed in range(first, first + count):
        description, data = make_case(seed, sources)
        out.write(f"S {seed}\n")
        out.flush()
        before = _rss_mb()
        start = time.perf_counter()
        outcome = "ok"
        try:
            decode_for_model(data, input_size=info.input_size, max_megapixels=FUZZ_MAX_MEGAPIXELS)
            decode_full(data, max_megapixels=FUZZ_MAX_MEGAPIXELS)
        except Exception as exc:  # noqa: BLE001 (any exception becomes one error row; recorded by class)
            outcome = f"{type(exc).__module__}.{type(exc).__qualname__}"
            if show:
                print(f"  {exc!r}", file=sys.stderr)
        elapsed_ms = (time.perf_counter() - start) * 1000
        out.write(f"E {seed} {outcome} {elapsed_ms:.1f} {_rss_mb() - before:.0f} {description}\n")
        out.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--show", action="store_true", help="print each exception to stderr")
    args = parser.parse_args(argv)
    run(args.fixtures, args.first, args.count, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
