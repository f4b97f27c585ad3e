"""Decoding (core/decode.py, `gazecrop.decode`) on plain functions, over the fixture images."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from gazecrop.decode import (CorruptImageError, DecodeError, ImageTooLargeError, NotAnImageError,
                             apply_orientation, check_size, decode_for_model, decode_full, read_header,
                             reduction_factor, to_rgb8)
from gazecrop.transforms.inference import ModelInfo

INFO = ModelInfo(spec="tiny", version="0" * 12, short_side=224)

# corrupt/ files that tolerant decoders still read (data/README.md): they may crop or fail.
TOLERANT = {"pillow_truncated_app14.jpg", "pillow_hopper_idat_after_image_end.png",
            "pillow_decompression_bomb_extents.gif"}
EXPECTED_FAILURES = {
    "empty_zero_bytes.jpg": NotAnImageError,
    "not_an_image.jpg": NotAnImageError,
    "pillow_broken.png": NotAnImageError,
    "pillow_decompression_bomb.gif": ImageTooLargeError,
    "sharp_giant-image.jpg": ImageTooLargeError,
}


def _pillow_upright(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _encode(rgb: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


# --- plain pixel functions -------------------------------------------------------------------------

def test_reduction_factor_picks_largest_that_still_covers_the_target():
    assert reduction_factor((4000, 3000), (304, 224)) == 8  # 500x375 covers 304x224
    assert reduction_factor((1200, 800), (336, 224)) == 2  # 600x400; /4 = 300x200 is too small
    assert reduction_factor((400, 300), (304, 224)) == 1
    assert reduction_factor((1801, 1201), (336, 224)) == 4  # libjpeg rounds up: 451x301


def test_to_rgb8_gray_16bit_float_and_alpha_on_white():
    gray = np.array([[0, 128, 255]], np.uint8)
    assert to_rgb8(gray).tolist() == [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]
    deep = np.array([[[0, 257 * 10, 65535]]], np.uint16)  # BGR order
    assert to_rgb8(deep).tolist() == [[[255, 10, 0]]]
    assert to_rgb8(np.array([[0.0, 0.5, 2.0]], np.float32)).tolist() == [[[0, 0, 0], [128, 128, 128],
                                                                          [255, 255, 255]]]
    bgra = np.array([[[0, 0, 255, 0], [0, 0, 255, 255], [0, 0, 255, 128]]], np.uint8)  # red, 3 alphas
    assert to_rgb8(bgra).tolist() == [[[255, 255, 255], [255, 0, 0], [255, 127, 127]]]
    gray_alpha = np.array([[[0, 0], [0, 255]]], np.uint8)
    assert to_rgb8(gray_alpha).tolist() == [[[255, 255, 255], [0, 0, 0]]]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow_exif_transpose(orientation):
    rgb = np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif.tobytes())
    buffer.seek(0)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buffer)).convert("RGB"))
    assert np.array_equal(apply_orientation(rgb, orientation), expected)


def test_size_guard_refuses_before_decoding():
    header = read_header(_encode(np.zeros((300, 400, 3), np.uint8), ".png"))
    check_size(header, 0.12)
    with pytest.raises(ImageTooLargeError, match="over --max_megapixels=0.1"):
        check_size(header, 0.1)
    check_size(header, 0)  # 0 disables the guard


def test_pillow_fallback_for_formats_opencv_cannot_read():
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :15] = (255, 0, 0, 255)  # left half opaque red, right half transparent
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="TGA")
    data = buffer.getvalue()
    assert read_header(data).format == "TGA"
    pixels = decode_full(data)
    assert pixels.shape == (20, 30, 3)
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[0, -1].tolist() == [255, 255, 255]


# --- fixtures --------------------------------------------------------------------------------------

def test_exif_orientations_give_upright_pixels_and_geometry(fixtures_dir):
    paths = sorted((fixtures_dir / "exif_orientation").glob("*.jpg"))
    assert len(paths) == 18
    for path in paths:
        data = path.read_bytes()
        expected = _pillow_upright(path)
        pixels = decode_full(data)
        assert _diff(pixels, expected) < 2.0, path.name
        upright = (1800, 1200) if path.name.startswith("Landscape") else (1200, 1800)
        assert read_header(data).oriented_size == upright, path.name
        model_input = decode_for_model(data, input_size=INFO.input_size)
        assert (model_input.source_width, model_input.source_height) == upright
        h, w = INFO.input_size(upright[1], upright[0])
        assert model_input.pixels.shape == (h, w, 3)
        assert model_input.reduction == 4  # 1800x1200 / 4 = 450x300 still covers 336x224
        reference = cv2.resize(expected, (w, h), interpolation=cv2.INTER_AREA)
        assert _diff(model_input.pixels, reference) < 4.0, path.name


def test_hopper_orientations_2_to_8_all_decode_to_the_upright_hopper(fixtures_dir):
    upright = decode_full((fixtures_dir / "edge_cases" / "pillow_hopper.jpg").read_bytes())
    for n in range(2, 9):
        path = fixtures_dir / "edge_cases" / f"pillow_hopper_orientation_{n}.jpg"
        assert read_header(path.read_bytes()).orientation == n
        assert _diff(decode_full(path.read_bytes()), upright) < 8.0, path.name


def test_every_edge_case_decodes_to_rgb8_at_its_oriented_size(fixtures_dir):
    for path in sorted((fixtures_dir / "edge_cases").iterdir()):
        data = path.read_bytes()
        header = read_header(data)
        width, height = header.oriented_size
        model_input = decode_for_model(data, input_size=INFO.input_size)
        assert (model_input.source_width, model_input.source_height) == (width, height), path.name
        assert model_input.pixels.dtype == np.uint8 and model_input.pixels.shape[2] == 3
        if header.megapixels < 50:
            pixels = decode_full(data)
            assert pixels.shape == (height, width, 3) and pixels.dtype == np.uint8, path.name


def test_huge_jpeg_model_input_uses_the_reduced_decode(fixtures_dir):
    data = (fixtures_dir / "edge_cases" / "thumbor_9643x10328_synthetic_huge.jpg").read_bytes()
    model_input = decode_for_model(data, input_size=INFO.input_size)
    assert model_input.reduction == 8
    assert (model_input.source_width, model_input.source_height) == (9643, 10328)


def test_cmyk_and_grayscale_jpegs_look_like_the_rgb_original(fixtures_dir):
    folder = fixtures_dir / "people_portrait"
    rgb = decode_full((folder / "Giunchedi__Filippo_January_2015_01.jpg").read_bytes())
    cmyk = decode_full((folder / "Giunchedi__Filippo_January_2015_01-cmyk.jpg").read_bytes())
    gray = decode_full((folder / "Giunchedi__Filippo_January_2015_01-grayscale.jpg").read_bytes())
    assert _diff(cmyk, rgb) < 12.0
    assert np.array_equal(gray[:, :, 0], gray[:, :, 1])
    assert _diff(gray, np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)) < 8.0
    rotated = decode_full((folder / "Giunchedi__Filippo_January_2015_01-cmyk-orientation-exif.jpg").read_bytes())
    assert rotated.shape == (800, 533, 3)  # orientation 6: stored 800x533, shown upright 533x800


def test_16bit_tiff_is_scaled_to_8bit(fixtures_dir):
    data = (fixtures_dir / "edge_cases" / "thumbor_gradient_16bit.tif").read_bytes()
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    expected = cv2.cvtColor(((raw.astype(np.uint32) + 128) // 257).astype(np.uint8), cv2.COLOR_BGR2RGB)
    assert np.array_equal(decode_full(data), expected)


def test_gif_first_frame_and_alpha_pngs(fixtures_dir):
    gif = decode_full((fixtures_dir / "edge_cases" / "pillow_hopper.gif").read_bytes())
    jpeg = decode_full((fixtures_dir / "edge_cases" / "pillow_hopper.jpg").read_bytes())
    assert _diff(gif, jpeg) < 20.0
    for path in sorted((fixtures_dir / "alpha_png").glob("*.png")):
        with Image.open(path) as im:
            im = im.convert("RGBA")
            rgba = np.asarray(im).astype(np.float64)
        alpha = rgba[:, :, 3:] / 255
        expected = np.round(rgba[:, :, :3] * alpha + 255 * (1 - alpha))
        assert _diff(decode_full(path.read_bytes()), expected.astype(np.uint8)) < 1.0, path.name


def test_corrupt_files_fail_with_a_reason_or_decode(fixtures_dir):
    for path in sorted((fixtures_dir / "corrupt").iterdir()):
        data = path.read_bytes()
        if path.name in TOLERANT:
            try:
                assert decode_for_model(data, input_size=INFO.input_size).pixels.shape[2] == 3
            except DecodeError:
                pass
            continue
        expected = EXPECTED_FAILURES.get(path.name, CorruptImageError)
        with pytest.raises(expected) as caught:
            decode_for_model(data, input_size=INFO.input_size)
        assert str(caught.value), path.name
