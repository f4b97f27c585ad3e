"""The whole pipeline on the FnApiRunner with the tiny model, over every fixture file.

The accounting invariant: every input file ends as one metadata row per ratio (rank 0: the default
--candidates 1) or exactly one error row.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import assert_accounted, crop_name, read_tables, run_gazecrop

RATIOS = ["1:1", "16:9", "9:16", "4:5"]
# Files of corrupt/ that no decoder should accept (data/README.md): they must end as decode errors.
UNDECODABLE = {
    "empty_zero_bytes.jpg", "not_an_image.jpg", "pillow_broken.png", "pillow_truncated_image.png",
    "pillow_truncated_jpeg.jpg", "pillow_truncated_end_chunk.png", "sharp_truncated.jpg",
    "sharp_truncated.png", "sharp_corrupt-header.jpg", "thumbor_BlueSquare_truncated.jpg",
    "pillow_broken_data_stream.png", "pillow_decompression_bomb.gif", "sharp_giant-image.jpg"}


@pytest.fixture(scope="module")
def fixture_run(fixtures_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fixture-run")
    summary = run_gazecrop(["--input", str(fixtures_dir / "**"), "--output", str(root),
                            "--max_output_side", "1024"])
    metadata, errors = read_tables(root)
    inputs = sorted(str(p) for p in fixtures_dir.rglob("*") if p.is_file())
    return root, summary, metadata, errors, inputs


def test_every_input_ends_as_metadata_rows_or_one_error_row(fixture_run):
    _, summary, metadata, errors, inputs = fixture_run
    assert_accounted(metadata, errors, inputs, RATIOS, candidates=1)
    cropped = {r["source_uri"] for r in metadata}
    for uri in cropped:  # with one candidate: exactly one row per ratio, rank 0
        assert sorted((r["aspect_ratio"], r["rank"]) for r in metadata if r["source_uri"] == uri) == \
            sorted((ratio, 0) for ratio in RATIOS)
    assert (summary.read, summary.cropped, summary.crops) == (len(inputs), len(cropped), len(metadata))
    assert sum(summary.failed.values()) == len(errors)
    for row in errors:
        assert row["stage"] and row["error_type"] and row["message"]


def test_hostile_files_fail_at_decode_and_valid_edge_cases_crop(fixture_run, fixtures_dir):
    _, _, metadata, errors, _ = fixture_run
    by_name = {r["source_uri"]: r for r in errors}
    for name in UNDECODABLE:
        row = by_name[str(fixtures_dir / "corrupt" / name)]
        assert row["stage"] == "decode", row
    assert by_name[str(fixtures_dir / "corrupt" / "sharp_giant-image.jpg")]["error_type"] == "ImageTooLargeError"
    cropped = {r["source_uri"] for r in metadata}
    for folder in ("edge_cases", "exif_orientation", "alpha_png", "kodak", "large"):
        for path in (fixtures_dir / folder).iterdir():
            if path.suffix.lower() in (".jpg", ".png", ".gif", ".webp", ".tif"):
                assert str(path) in cropped, path
    # Text files beside the photos (README, LICENSE) are inputs too: refused as not images.
    assert by_name[str(fixtures_dir / "NOTES.md")]["error_type"] == "NotAnImageError"


def test_crops_decode_with_the_recorded_geometry(fixture_run):
    root, _, metadata, _, _ = fixture_run
    for row in metadata:
        w, h = row["source_width"], row["source_height"]
        assert 0 <= row["crop_x"] and row["crop_x"] + row["crop_width"] <= w
        assert 0 <= row["crop_y"] and row["crop_y"] + row["crop_height"] <= h
        rw, rh = (int(v) for v in row["aspect_ratio"].split(":"))
        if min(row["crop_width"], row["crop_height"]) >= 50:
            assert abs(row["crop_width"] / row["crop_height"] - rw / rh) < 0.03 * rw / rh, row
        assert max(row["output_width"], row["output_height"]) <= 1024
        assert row["output_width"] <= row["crop_width"] and row["output_height"] <= row["crop_height"]
        assert 0 <= row["focal_x"] < w and 0 <= row["focal_y"] < h
        assert 0.0 <= row["saliency_kept"] <= 1.0 + 1e-6
        assert row["output_uri"].startswith(str(root / "crops") + "/")
    for row in metadata[::7]:  # decode a sample of the crop files (the 100-MP ones included below)
        crop = cv2.imread(row["output_uri"])
        assert crop.shape[:2] == (row["output_height"], row["output_width"]), row["output_uri"]
    huge = [r for r in metadata if "9643x10328" in r["source_uri"]]
    assert len(huge) == 4 and all(cv2.imread(r["output_uri"]) is not None for r in huge)


def test_exif_rotated_inputs_give_upright_crops(fixture_run, fixtures_dir):
    _, _, metadata, _, _ = fixture_run
    for row in metadata:
        if "/exif_orientation/" not in row["source_uri"] or row["aspect_ratio"] != "16:9":
            continue
        portrait = "Portrait_" in row["source_uri"]
        assert (row["source_width"], row["source_height"]) == ((1200, 1800) if portrait else (1800, 1200))
        with Image.open(row["source_uri"]) as im:
            upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        x, y, w, h = row["crop_x"], row["crop_y"], row["crop_width"], row["crop_height"]
        expected = cv2.resize(upright[y:y + h, x:x + w], (row["output_width"], row["output_height"]),
                              interpolation=cv2.INTER_AREA)
        crop = cv2.cvtColor(cv2.imread(row["output_uri"]), cv2.COLOR_BGR2RGB)
        assert np.abs(crop.astype(int) - expected.astype(int)).mean() < 6.0, row["source_uri"]


def test_relative_layout_mirrors_the_input_tree(fixture_run, fixtures_dir):
    root, _, metadata, _, _ = fixture_run
    row = next(r for r in metadata if r["source_uri"].endswith("kodak/kodim01.png") and r["aspect_ratio"] == "4:5")
    assert row["output_uri"] == str(root / "crops" / "4x5" / crop_name(row["source_uri"], "kodak/kodim01.png"))
