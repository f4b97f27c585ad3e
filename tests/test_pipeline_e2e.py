"""End to end with the real bundled model on a few real photos (slower: VGG16 on the CPU)."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from conftest import read_tables, run_gazecrop
from gazecrop.paths import output_relpath

pytestmark = pytest.mark.e2e

PHOTOS = [("kodak", "kodim04.png"), ("kodak", "kodim23.png"), ("people_portrait", "Giunchedi__Filippo_January_2015_01.jpg"),
          ("exif_orientation", "Portrait_6.jpg")]


@pytest.fixture(scope="module")
def e2e_run(fixtures_dir, tmp_path_factory):
    from gazecrop.model.loading import BUNDLED
    if not BUNDLED["default"].is_file():
        pytest.skip(f"bundled weights {BUNDLED['default']} are not in the tree yet")
    inputs = tmp_path_factory.mktemp("e2e-in")
    for folder, name in PHOTOS:
        (inputs / folder).mkdir(exist_ok=True)
        shutil.copy(fixtures_dir / folder / name, inputs / folder / name)
    root = tmp_path_factory.mktemp("e2e-out")
    summary = run_gazecrop(["--input", str(inputs / "**"), "--output", str(root), "--model", "default",
                            "--batch_size", "4", "--save_saliency"])
    metadata, errors = read_tables(root)
    return root, summary, metadata, errors


def test_real_model_crops_every_photo(e2e_run):
    from gazecrop.transforms.inference import describe_model
    root, summary, metadata, errors = e2e_run
    assert errors == [] and summary.cropped == len(PHOTOS) and len(metadata) == 4 * len(PHOTOS)
    version = describe_model("default").version
    assert {r["model_version"] for r in metadata} == {version}
    for row in metadata:
        crop = cv2.imread(row["output_uri"])
        assert crop.shape[:2] == (row["output_height"], row["output_width"])
        # The trained model concentrates attention: the best crop keeps more than its share of area.
        area_share = row["crop_width"] * row["crop_height"] / (row["source_width"] * row["source_height"])
        assert row["saliency_kept"] >= area_share - 1e-6, row


def test_saliency_maps_are_log_densities_at_model_resolution(e2e_run):
    from gazecrop.transforms.inference import describe_model
    root, _, metadata, _ = e2e_run
    info = describe_model("default")
    for folder, name in PHOTOS:
        row = next(r for r in metadata if r["source_uri"].endswith(f"{folder}/{name}"))
        log_density = np.load(root / "saliency" / f"{output_relpath(row['source_uri'], f'{folder}/{name}')}.npy")
        assert log_density.dtype == np.float32
        assert log_density.shape == info.input_size(row["source_height"], row["source_width"])
        peak = log_density.max()
        assert abs(np.log(np.exp(log_density.astype(np.float64) - peak).sum()) + peak) < 1e-3
