"""Decode stage: source bytes to the model's input pixels and the source's geometry.

Elements carry the compressed source bytes through the pipeline, never full-resolution pixels, so a
worker's memory holds at most a batch of model inputs. This module has two decoders over the same
normalisation steps:

* `decode_for_model` makes the model input. For a JPEG much larger than the model input it asks libjpeg
  for a 1/2, 1/4 or 1/8 scale decode (`cv2.IMREAD_REDUCED_COLOR_*`: the inverse DCT runs at the smaller
  size, several times faster than a full decode and much less memory), then resizes to the exact model
  input size with area averaging.
* `decode_full` gives the full-resolution source; the writer calls it to cut the crops.

Both apply the same steps, in this order, so the model input and the crops see the same picture:

1. `read_header`: Pillow's lazy `Image.open` reads only the header (format, size, mode, EXIF
   orientation). Pillow is used for nothing else here but formats OpenCV cannot read (see step 3).
2. `check_size`: the decompression-bomb guard, `--max_megapixels`, from the header, before any pixel is
   decoded. Pillow's own guard (`Image.MAX_IMAGE_PIXELS`) is set to the same limit while `read_header`
   opens the file (`_pillow_open`), so that the one limit a user sets is the one that applies, and so
   that Pillow refuses before it allocates: opening a GIF allocates a buffer of its first frame's
   extent (the disposal background), which a 60-byte file can declare 65535x65535; without Pillow's
   guard that open took 4-15 s and 3-4 GB before `check_size` ran (found by tests/test_decode_fuzz.py).
3. OpenCV decodes with `IMREAD_IGNORE_ORIENTATION` (we apply the EXIF orientation ourselves, from the
   same header that gave the geometry). OpenCV reads JPEG (CMYK included), PNG (palette, 1-bit, 16-bit,
   alpha), WebP, TIFF, BMP, PNM and the first frame of a GIF. A short list of other raster formats
   (`PILLOW_FORMATS`: ICO, TGA, PCX, PSD, AVIF, ...) is decoded with Pillow instead, first frame only.
   Every other format Pillow knows is refused at its header (`ALLOWED_FORMATS`): some of Pillow's
   readers run other programs on the file (EPS and PostScript run Ghostscript).
4. `to_rgb8`: grayscale to RGB, 16-bit to 8-bit (rounded, x/257), float to 8-bit (0..1 clipped), alpha
   composited on white, BGR to RGB; strip by strip into one uint8 RGB array (8-bit BGR in place).
5. `apply_orientation`: EXIF orientation 2-8 (flips, rotations, transposes), as Pillow's
   `ImageOps.exif_transpose` would.

Memory bound. Decoding an image of P megapixels whose raw decode has B bytes per pixel (channels x
bytes per sample: 3 for 8-bit RGB, 4 for 8-bit RGBA, 6 for 16-bit RGB, 8 for 16-bit RGBA; 4 for the
formats Pillow decodes) takes at most

    max(2B, B + 3, 6) x P x 10^6 bytes, plus at most 32 MB whatever the size (strip temporaries,
    decoder buffers, OpenCV's set-up on first use: 10-15 MB measured)

(`decode_bytes_per_pixel` says which step needs what), and `check_size` refuses, from the header,
every image for which that exceeds 8 bytes per pixel that --max_megapixels allows
(`DECODE_BYTES_PER_ALLOWED_PIXEL`). So one decode never takes more than

    8 x max_megapixels x 10^6 bytes + 32 MB        (1.6 GB + 32 MB at the default 200 MP)

and an 8-bit RGB image (JPEG, most PNGs) takes 6 x P x 10^6 bytes, as before. `python -m
gazecrop.tools.decodebench --megapixels 48` measures it: a 48-MP 16-bit RGBA PNG took 1,929 MB before the
strip conversion and takes 778 MB now (bound 16 x 48 = 768 MB, plus the fixed part).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import re
import threading
import warnings
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image


# Pillow's guard is set per open to the caller's --max_megapixels (`_pillow_open`); its warning below
# that limit says nothing our guard does not.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_PILLOW_GUARD = threading.Lock()  # Image.MAX_IMAGE_PIXELS is a process-wide setting

# Default of --max_megapixels. The biggest valid fixture is a 100-megapixel JPEG; 200 MP of RGB is 600 MB
# when the writer decodes it at full resolution, which a worker with a few GB per core can afford.
DEFAULT_MAX_MEGAPIXELS = 200.0

# The formats the decode stage reads (Pillow's format names), and nothing else. This is a security
# boundary, not a convenience: Pillow identifies formats whose readers run another program (EPS and
# PostScript run Ghostscript where it is installed: untrusted PostScript executed on a worker), need a
# handler from outside Pillow (WMF, BUFR, GRIB, HDF5) or hold no picture (MPEG video, IPTC). A file of
# any format not listed here is `NotAnImageError`, refused at its header (`read_header` opens only
# these formats; `decode_pixels` checks again). Add a format only if it is a raster image whose pixels
# OpenCV or Pillow decode in-process, and say which of the two sets below reads it.

# Decoded by OpenCV itself (step 3 of the module docstring).
OPENCV_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "BMP", "DIB", "GIF", "PPM", "JPEG2000"})

# Decoded by Pillow, first frame, because OpenCV has no reader for them (or, for AVIF and MPO, because
# Pillow always read them here and their crops should not change).
PILLOW_FORMATS = frozenset({
    "AVIF",  # AV1 still image (libavif, bundled in Pillow's wheels)
    "DDS",  # DirectDraw Surface, game and 3-D textures (uncompressed and DXT/BC)
    "ICNS",  # Apple icon (PNG or JPEG 2000 images inside)
    "ICO",  # Windows icon / favicon (BMP or PNG images inside)
    "MPO",  # multi-picture JPEG of stereo and some phone cameras (Pillow's JPEG reader names it MPO)
    "PCX",  # ZSoft Paintbrush
    "PSD",  # Photoshop: the merged image Photoshop stores beside the layers
    "QOI",  # Quite OK Image
    "SGI",  # Silicon Graphics image (.rgb, .sgi, .bw)
    "TGA",  # Truevision Targa
})

ALLOWED_FORMATS = OPENCV_FORMATS | PILLOW_FORMATS

# `check_size` refuses an image whose decode needs more than this many bytes per pixel that
# --max_megapixels allows (`decode_bytes_per_pixel`: 6 for 8-bit RGB, 8 for 8-bit RGBA, 12 for 16-bit
# RGB, 16 for 16-bit RGBA). Every 8-bit image up to the limit fits; 16-bit RGB fits up to 2/3 of it and
# 16-bit RGBA up to half of it (100 MP at the default 200).
DECODE_BYTES_PER_ALLOWED_PIXEL = 8

# Conversions to uint8 RGB run over strips of rows of about this many pixels, so their temporaries
# (at most ~40 bytes per pixel, for 16-bit RGBA) stay under 3 MB whatever the image's size.
STRIP_PIXELS = 1 << 16

# A reduced-resolution JPEG decode is used only when the reduced image is still at least this many
# times the model input on each side, so the final area resize always averages real pixels.
_MIN_OVERSAMPLING = 1.0

_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}


class DecodeError(ValueError):
    """Base class of the reasons a file is refused by the decode stage."""


class NotAnImageError(DecodeError):
    """No known image format recognised in the file's first bytes (empty file, text, broken header)."""


class ImageTooLargeError(DecodeError):
    """The header declares more pixels than --max_megapixels allows (decompression-bomb guard)."""


class CorruptImageError(DecodeError):
    """The header is readable but the pixel data is not (truncated or damaged file)."""


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What the header says, before any pixel is decoded.

    `width`/`height` are the stored size; `oriented_size` is the size after EXIF orientation, the
    coordinate system of every crop and metadata row.
    """
    format: str
    mode: str
    width: int
    height: int
    orientation: int = 1
    channels: int = 4  # at most this many channels in the raw decode (`decoded_layout`)
    sample_bytes: int = 1  # bytes per sample of the raw decode: 1 (8-bit), 2 (16-bit), 4 or 8

    @property
    def oriented_size(self) -> tuple[int, int]:
        """(width, height) after the EXIF orientation is applied: 5-8 swap the axes."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def decode_bytes(self) -> int:
        """The most memory decoding this image takes: `decode_bytes_per_pixel` of its layout, per pixel."""
        return decode_bytes_per_pixel(self.channels, self.sample_bytes) * self.width * self.height


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """The decode stage's result for one source: the model input and the source's geometry."""
    pixels: np.ndarray  # uint8 RGB (h, w, 3) at the model's input size
    source_width: int  # after EXIF orientation
    source_height: int
    sha256: str
    reduction: int  # 1, 2, 4 or 8: the JPEG reduced-decode factor used (1 = full decode)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pillow_open(data: bytes, max_pixels: float) -> Image.Image:
    """`Image.open` with Pillow's decompression-bomb guard at `max_pixels` (0: none), which Pillow
    checks on the declared size before it allocates anything for it (ImageTooLargeError)."""
    with _PILLOW_GUARD:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels / 2 if max_pixels else None  # Pillow raises over twice this
        try:
            return Image.open(io.BytesIO(data), formats=_pillow_readers())
        except Image.DecompressionBombError as exc:
            declared = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(declared.group(1)) / 1e6:.1f} megapixels" if declared else "an image too large"
            raise ImageTooLargeError(f"{_sniff_format(data)} header declares {size}, over --max_megapixels="
                                     f"{max_pixels / 1e6:g} (refused while reading the header)") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _pillow_readers() -> tuple[str, ...]:
    """The Pillow readers `Image.open` may try: those of `ALLOWED_FORMATS` (MPO has none of its own: the
    JPEG reader returns an MPO image when the file holds several pictures)."""
    Image.init()
    return tuple(sorted(name for name in ALLOWED_FORMATS if name in Image.OPEN))


def refused_format_error(data: bytes) -> NotAnImageError:
    """The error for a file Pillow's allowed readers did not identify: one that names the format if the
    file's signature is that of a format Pillow knows but the decode stage refuses (EPS, WMF, ...)."""
    known = _sniff_format(data)
    if known == "image" or known in ALLOWED_FORMATS:
        return NotAnImageError(f"not a recognised image format ({len(data)} bytes)")
    return NotAnImageError(
        f"{known} files are refused: the decode stage reads only the raster formats "
        f"{', '.join(sorted(ALLOWED_FORMATS))} (transforms/decode.py ALLOWED_FORMATS). "
        f"Received: a {known} file ({len(data)} bytes)")


def _sniff_format(data: bytes) -> str:
    """The Pillow format name whose signature `data` starts with (for messages), "image" if none.

    Only each format's signature test runs (a comparison of the first bytes), never its reader."""
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            if accept and accept(data[:32]) is True:
                return name
        except Exception:  # noqa: BLE001 (a format's signature test; only used to word a message)
            continue
    return "image"


def read_header(data: bytes, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> ImageHeader:
    """Format, stored size, mode and EXIF orientation from the header alone (no pixel is decoded).

    `max_megapixels` (0: no limit) bounds what Pillow may allocate while it reads the header; the
    caller still applies `check_size` (Pillow checks some formats' sizes, not all).
    """
    if not data:
        raise NotAnImageError("empty file (0 bytes)")
    try:
        with _pillow_open(data, max_megapixels * 1e6) as image:
            orientation = _orientation(image)
            channels, sample_bytes = decoded_layout(image, data)
            return ImageHeader(format=image.format or "unknown", mode=image.mode, width=image.width,
                               height=image.height, orientation=orientation, channels=channels,
                               sample_bytes=sample_bytes)
    except DecodeError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise refused_format_error(data) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"unreadable image header: {exc}") from exc


# Pillow modes of single-channel images (OpenCV decodes their JPEG, PNG and PNM files to one channel).
_GRAY_MODES = frozenset({"1", "L", "I", "I;16", "I;16B", "I;16L", "F"})


def decoded_layout(image: Image.Image, data: bytes) -> tuple[int, int]:
    """(channels, bytes per sample) that the raw decode of this file has at most, from its header.

    The raw decode is OpenCV's `IMREAD_UNCHANGED` result for `OPENCV_FORMATS` (at most 4 channels) and
    Pillow's own image for `PILLOW_FORMATS` (at most 4 bytes per pixel, whatever its mode). Where the
    header does not tell, the larger figure is assumed: colour and palette images count 4 channels
    unless they are JPEG, PNG, PNM or WebP without transparency; JPEG 2000 counts 16 bits per sample.
    """
    if image.format not in OPENCV_FORMATS:
        return 4, 1
    transparent = "transparency" in image.info or "A" in image.mode
    if image.format in ("JPEG", "PNG", "PPM", "WEBP") and not transparent:
        channels = 1 if image.mode in _GRAY_MODES else 3 if image.mode in ("RGB", "YCbCr") else 4
    else:
        channels = 4
    return channels, _sample_bytes(image, data)


def _sample_bytes(image: Image.Image, data: bytes) -> int:
    """Bytes per sample of OpenCV's raw decode: the bit depth the header declares, rounded up to a byte
    size OpenCV stores (8-bit and smaller samples are 1 byte)."""
    if image.format == "PNG":
        bits = data[24]  # IHDR, the first chunk (PNG spec): width, height, then the bit depth
    elif image.format == "TIFF":
        declared = image.tag_v2.get(258, 1)  # BitsPerSample, one value per sample
        bits = max(declared) if isinstance(declared, tuple) else int(declared)
    elif image.format == "PPM":
        args = image.tile[0].args if image.tile else None  # (rawmode, maxval) where maxval is not 255
        maxval = args[1] if isinstance(args, tuple) and len(args) == 2 and isinstance(args[1], int) else 255
        bits = 32 if image.mode == "F" else 16 if image.mode == "I" or maxval > 255 else 8
    elif image.format == "JPEG2000":
        bits = 8 if image.mode == "L" else 16  # its header's depth per component is not read here
    else:
        bits = 8  # JPEG, WebP, GIF, BMP: OpenCV decodes them to 8-bit samples
    return 1 if bits <= 8 else 2 if bits <= 16 else 4 if bits <= 32 else 8


def decode_bytes_per_pixel(channels: int, sample_bytes: int) -> int:
    """Peak bytes per pixel of `decode_pixels` for a raw decode of B = `channels` x `sample_bytes` bytes
    per pixel: the largest of its three steps, `max(2B, B + 3, 6)`.

    1. `cv2.imdecode`: 2B. OpenCV's Python binding copies the decoded image into a numpy array before it
       frees its own, so the raw decode is held twice for a moment (measured for every format).
    2. `to_rgb8`: B + 3, the raw decode and the uint8 RGB result it is converted into strip by strip
       (just 3 for 8-bit BGR, converted in place).
    3. `apply_orientation` (EXIF orientations 2-8): 6, the RGB result and its re-oriented copy.

    Pillow's formats count B = 4 (its in-memory image: 4 bytes per pixel for 8-bit modes), converted
    strip by strip into the RGB result: 4 + 3.
    """
    raw = channels * sample_bytes
    return max(2 * raw, raw + 3, 6)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block must not fail the image: treat it as upright
        return 1
    return int(value) if value in range(1, 9) else 1


def check_size(header: ImageHeader, max_megapixels: float) -> None:
    """Refuse a header that declares more than `max_megapixels` (or a zero-sized image), or whose decode
    would need more than `DECODE_BYTES_PER_ALLOWED_PIXEL` bytes per allowed pixel (deep samples, alpha)."""
    if header.width <= 0 or header.height <= 0:
        raise CorruptImageError(f"header declares an empty image {header.width}x{header.height}")
    if not max_megapixels:
        return
    if header.megapixels > max_megapixels:
        raise ImageTooLargeError(
            f"{header.format} header declares {header.width}x{header.height} = "
            f"{header.megapixels:.1f} megapixels, over --max_megapixels={max_megapixels:g}")
    allowed = DECODE_BYTES_PER_ALLOWED_PIXEL * max_megapixels * 1e6
    if header.decode_bytes > allowed:
        per_pixel = decode_bytes_per_pixel(header.channels, header.sample_bytes)
        raise ImageTooLargeError(
            f"{header.format} of {header.width}x{header.height} with up to {header.channels} channels of "
            f"{8 * header.sample_bytes} bits needs {header.decode_bytes / 1e6:.0f} MB to decode ({per_pixel} "
            f"bytes per pixel), over the {allowed / 1e6:.0f} MB that --max_megapixels={max_megapixels:g} allows "
            f"({DECODE_BYTES_PER_ALLOWED_PIXEL} bytes per pixel); --max_megapixels="
            f"{math.ceil(header.decode_bytes / DECODE_BYTES_PER_ALLOWED_PIXEL / 1e5) / 10:g} or more accepts it. "
            f"Received: {header.megapixels:.1f} megapixels")


def reduction_factor(stored_size: tuple[int, int], target_size: tuple[int, int]) -> int:
    """Largest JPEG scale-down factor (1, 2, 4, 8) whose result still covers the target on both axes.

    Sizes are (width, height) in the same (stored) orientation. libjpeg rounds scaled sizes up.
    """
    width, height = stored_size
    target_w, target_h = target_size
    best = 1
    for factor in (2, 4, 8):
        if (-(-width // factor) >= target_w * _MIN_OVERSAMPLING
                and -(-height // factor) >= target_h * _MIN_OVERSAMPLING):
            best = factor
    return best


def to_rgb8(image: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """Any OpenCV decode (gray, BGR, BGRA, gray+alpha; 8/16-bit or float) to uint8 RGB, alpha on white.

    The conversion runs over strips of `STRIP_PIXELS`, written into one uint8 RGB result, so it never
    holds a full-size wide copy (a 16-bit RGBA image once needed 4 copies of 4-8 bytes per pixel). With
    `in_place`, an 8-bit BGR `image` becomes the result itself (the caller gives `image` up).
    """
    height, width = image.shape[:2]
    reuse = (in_place and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
             and image.flags.c_contiguous and image.flags.writeable)
    out = image if reuse else np.empty((height, width, 3), np.uint8)
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        out[top:top + rows] = _strip_to_rgb8(image[top:top + rows])
    return out


def _strip_to_rgb8(image: np.ndarray) -> np.ndarray:
    """`to_rgb8` of a few rows (each output pixel depends only on the same input pixel)."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = np.round(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise CorruptImageError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha
        color = cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2RGB)
        return _on_white(color, image[:, :, 1])
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return _on_white(cv2.cvtColor(image, cv2.COLOR_BGRA2RGB), image[:, :, 3])
    raise CorruptImageError(f"unsupported channel count {channels}")


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over white: out = a * rgb + (1 - a) * 255, rounded (integer arithmetic)."""
    a = alpha.astype(np.uint16)[:, :, None]
    return ((rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation (1-8) to an (h, w, ...) array, as Pillow's ImageOps.exif_transpose."""
    if orientation == 2:
        image = image[:, ::-1]
    elif orientation == 3:
        image = image[::-1, ::-1]
    elif orientation == 4:
        image = image[::-1, :]
    elif orientation == 5:
        image = image.swapaxes(0, 1)
    elif orientation == 6:
        image = image.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        image = image.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        image = image.swapaxes(0, 1)[::-1, :]
    return np.ascontiguousarray(image)


def decode_pixels(data: bytes, header: ImageHeader, reduction: int = 1) -> np.ndarray:
    """Decode to uint8 RGB, EXIF orientation applied; `reduction` > 1 only for JPEG."""
    if header.format not in ALLOWED_FORMATS:  # read_header opens only allowed formats: a second guard
        raise refused_format_error(data)
    if header.format in PILLOW_FORMATS:
        pixels = _decode_with_pillow(data, header.width * header.height)
        if pixels.shape[:2] != (header.height, header.width):
            raise CorruptImageError(f"the header declares {header.width}x{header.height} but Pillow decoded "
                                    f"{pixels.shape[1]}x{pixels.shape[0]}")
        return apply_orientation(pixels, header.orientation)
    if header.format == "PNG":
        check_png_chunks(data)
    buffer = np.frombuffer(data, dtype=np.uint8)
    if reduction > 1:
        flags = _REDUCED_FLAGS[reduction] | cv2.IMREAD_IGNORE_ORIENTATION
    else:
        flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error as exc:
        raise CorruptImageError(f"OpenCV could not decode this {header.format}: {exc}") from exc
    if image is None or image.size == 0:
        raise CorruptImageError(
            f"OpenCV could not decode this {header.format} ({header.width}x{header.height} declared, "
            f"{len(data)} bytes): truncated or damaged pixel data")
    expected = (-(-header.height // reduction), -(-header.width // reduction))
    if image.shape[:2] != expected:  # crops are placed with the header's geometry: they must agree
        raise CorruptImageError(f"the header declares {header.width}x{header.height} but OpenCV decoded "
                                f"{image.shape[1] * reduction}x{image.shape[0] * reduction}")
    rgb = to_rgb8(image, in_place=True)
    del image  # the raw decode is freed before orienting, so at most two RGB copies are held then
    return apply_orientation(rgb, header.orientation)


def check_png_chunks(data: bytes) -> None:
    """CorruptImageError if a PNG chunk declares more bytes than the file has left.

    OpenCV's PNG reader allocates each chunk's declared length before reading it: a 57-byte PNG whose
    IDAT length says 1 GB made one decode take 1.4 s and 1 GB (tests/test_decode_fuzz.py found it).
    Walking the chunk list costs microseconds.
    """
    position = 8  # after the signature
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        left = len(data) - position - 12
        if length > left:
            raise CorruptImageError(f"PNG chunk {kind.decode('latin-1')!r} declares {length} bytes, the file "
                                    f"has {max(left, 0)} left: truncated or damaged")
        if kind == b"IEND":
            return
        position += 12 + length


def _decode_with_pillow(data: bytes, max_pixels: int) -> np.ndarray:
    """First frame of a format OpenCV has no reader for, as uint8 RGB (alpha on white); Pillow may
    allocate no more than the `max_pixels` the checked header declared."""
    try:
        with _pillow_open(data, max_pixels) as image:
            image.seek(0)
            image.load()  # some readers (ICO) settle the size only here
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            out = np.empty((image.height, image.width, 3), np.uint8)
            rows = max(1, STRIP_PIXELS // max(image.width, 1))
            for top in range(0, image.height, rows):  # strips: no full-size converted copy
                box = (0, top, image.width, min(top + rows, image.height))
                strip = np.asarray(image.crop(box).convert("RGBA" if has_alpha else "RGB"))
                out[top:top + rows] = _on_white(strip[:, :, :3], strip[:, :, 3]) if has_alpha else strip
            return out
    except DecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"Pillow could not decode this image: {exc}") from exc


def decode_full(data: bytes, *, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
    """The full-resolution source as uint8 RGB (h, w, 3), EXIF orientation applied."""
    header = read_header(data, max_megapixels)
    check_size(header, max_megapixels)
    return decode_pixels(data, header)


def decode_for_model(data: bytes, *, input_size: Callable[[int, int], tuple[int, int]],
                     max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> ModelInput:
    """The model input (uint8 RGB at `input_size(height, width)` of the oriented source) and geometry.

    `input_size` is the model's `input_size(height, width) -> (h, w)`.
    """
    header = read_header(data, max_megapixels)
    check_size(header, max_megapixels)
    width, height = header.oriented_size
    target_h, target_w = input_size(height, width)
    reduction = 1
    if header.format == "JPEG":
        # The target in the stored orientation, to compare with the stored size.
        stored_target = (target_h, target_w) if header.orientation in (5, 6, 7, 8) else (target_w, target_h)
        reduction = reduction_factor((header.width, header.height), stored_target)
    pixels = decode_pixels(data, header, reduction)
    pixels = resize_to(pixels, (target_w, target_h))
    return ModelInput(pixels=pixels, source_width=width, source_height=height, sha256=sha256_hex(data),
                      reduction=reduction)


def array_for_model(pixels: np.ndarray, *, input_size: Callable[[int, int], tuple[int, int]]) -> ModelInput:
    """The model input of a picture already decoded to uint8 RGB (H, W, 3), upright (no EXIF orientation
    to apply): resized as `decode_for_model` resizes a decoded source. `sha256` is "" (no file)."""
    height, width = pixels.shape[:2]
    target_h, target_w = input_size(height, width)
    return ModelInput(pixels=resize_to(pixels, (target_w, target_h)), source_width=width, source_height=height,
                      sha256="", reduction=1)


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height): area averaging when shrinking, bilinear when enlarging."""
    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width <= image.shape[1] and height <= image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------------------------------
# The Beam stage
# ---------------------------------------------------------------------------------------------------
