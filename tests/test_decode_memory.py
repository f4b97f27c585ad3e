"""Memory bounded by bytes, not pixels (issue 14, item 7).

A 48-megapixel 16-bit RGBA PNG (a 9-11 MB file) took 1.9 GB over the process's baseline to decode (2.6 GB
in all): the 8-bytes-per-pixel raw decode, then full-size uint32 and uint16 copies while it was reduced to
8 bits and composited on white. The
decode now converts strip by strip (`core/decode.py`, "Memory bound" in its docstring), and the
size guard counts bytes: an image whose decode would need more than 8 bytes per pixel that
--max_megapixels allows is refused from its header. Checked here:

* through `gazecrop run`: with `--max_megapixels 1`, a 0.9-MP 16-bit RGBA PNG (16 bytes per pixel) is an
  `ImageTooLargeError` row at stage decode that says which --max_megapixels accepts it, while a 0.9-MP
  8-bit RGBA PNG and smaller 16-bit RGB and RGBA PNGs are cropped, pixel for pixel as an independent
  reference conversion of the 16-bit source says;
* in fresh child processes (`gazecrop.tools.decodebench`): a 12-MP 16-bit RGBA and 8-bit RGBA PNG decode within
  the bound the module states;
* the benchmark command runs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from conftest import assert_accounted, read_tables, run_gazecrop
from gazecrop.tools import decodebench


def _photo_bgra16(fixtures_dir: Path, width: int, height: int, alpha: bool) -> np.ndarray:
    """A real photo (kodim05) as 16-bit BGR(A): 8-bit values spread over 16 bits with low-bit detail, and
    an alpha ramp from transparent (left) to opaque (right)."""
    bgr = cv2.resize(cv2.imread(str(fixtures_dir / "kodak" / "kodim05.png")), (width, height),
                     interpolation=cv2.INTER_AREA).astype(np.int64)
    noise = np.random.default_rng(5).integers(-100, 101, bgr.shape)
    deep = np.clip(bgr * 257 + noise, 0, 65535).astype(np.uint16)
    if not alpha:
        return deep
    ramp = np.broadcast_to(np.linspace(0, 65535, width).astype(np.uint16)[None, :, None], (height, width, 1))
    return np.concatenate([deep, ramp], axis=2)


def _expected_rgb8(bgr_a16: np.ndarray) -> np.ndarray:
    """Independent reference: 16 to 8 bits rounded (x / 257), alpha composited on white, as RGB."""
    eight = np.round(bgr_a16.astype(np.float64) / 257)
    rgb = eight[:, :, 2::-1]
    if bgr_a16.shape[2] == 4:
        a = eight[:, :, 3:] / 255
        rgb = np.round(rgb * a + 255 * (1 - a))
    return rgb.astype(np.uint8)


def test_deep_images_are_bounded_by_bytes_and_still_crop_exactly(fixtures_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    sources = {
        "deep_rgba_0.9mp.png": _photo_bgra16(fixtures_dir, 1000, 900, alpha=True),  # 16 B/px: 14.4 MB > 8
        "deep_rgba_0.35mp.png": _photo_bgra16(fixtures_dir, 700, 500, alpha=True),  # 5.6 MB
        "deep_rgb_0.56mp.png": _photo_bgra16(fixtures_dir, 800, 700, alpha=False),  # 12 B/px: 6.7 MB
        "rgba8_0.9mp.png": (_photo_bgra16(fixtures_dir, 1000, 900, alpha=True) // 257).astype(np.uint8),  # 7.2 MB
    }
    for name, pixels in sources.items():
        assert cv2.imwrite(str(inputs / name), pixels)
    out = tmp_path / "out"
    run_gazecrop(["--input", f"{inputs}/*", "--output", str(out), "--aspect_ratios", "1:1,16:9",
                  "--output_format", "png", "--max_megapixels", "1"])

    metadata, errors = read_tables(out)
    assert_accounted(metadata, errors, sorted(str(inputs / n) for n in sources), ["1:1", "16:9"])
    assert [Path(r["source_uri"]).name for r in errors] == ["deep_rgba_0.9mp.png"], errors
    row = errors[0]
    assert (row["stage"], row["error_type"]) == ("decode", "ImageTooLargeError"), row
    assert "needs 14 MB to decode (16 bytes per pixel)" in row["message"], row
    assert "--max_megapixels=1.8 or more accepts it" in row["message"], row
    for row in metadata:
        source = sources[Path(row["source_uri"]).name]
        assert (row["source_height"], row["source_width"]) == source.shape[:2], row
        crop = cv2.imread(row["output_uri"], cv2.IMREAD_UNCHANGED)
        assert crop.shape == (row["crop_height"], row["crop_width"], 3), row
        box = source[row["crop_y"]:row["crop_y"] + row["crop_height"], row["crop_x"]:row["crop_x"] + row["crop_width"]]
        expected = _expected_rgb8(box.astype(np.uint16) * (257 if box.dtype == np.uint8 else 1))
        assert np.array_equal(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), expected), row["output_uri"]


def test_decode_memory_stays_within_the_stated_bound(tmp_path):
    """Peak RSS of a fresh child decoding 12-MP PNGs, over a child that only imports and reads the file,
    within `max(2B, B + 3, 6)` bytes per pixel (B: raw bytes per pixel) plus 32 MB, as the module says."""
    paths = decodebench.write_pngs(tmp_path, 12)
    width, height = decodebench.image_size(12)
    for kind, per_pixel in (("16-bit RGBA", 16), ("8-bit RGBA", 8)):
        baseline = decodebench.measure("baseline", paths[kind])["peak_mb"]
        for stage in ("full", "model"):
            used = decodebench.measure(stage, paths[kind])["peak_mb"] - baseline
            bound = per_pixel * width * height / 1e6 + 32
            assert used <= bound, f"{kind} {stage} decode took {used:.0f} MB, over the stated {bound:.0f} MB"


def test_decodebench_prints_every_kind_of_png(tmp_path, capsys):
    assert decodebench.main(["--megapixels", "0.05", "--workdir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("decode peak memory, PNGs of 258x194")
    assert [line.split("  ")[0].strip() for line in lines[2:]] == list(decodebench.KINDS)
