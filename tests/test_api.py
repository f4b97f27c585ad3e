"""`gazecrop.crop` (core/api.py) and `gazecrop crop` (pipeline/crop_command.py) against `gazecrop run`: the same
boxes, focal points and saliency_kept, with the real bundled model on real photos (one pipeline run shared)."""

from __future__ import annotations

import doctest
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import read_tables, run_gazecrop

pytestmark = pytest.mark.e2e

# Three input shapes (landscape, square, EXIF-rotated portrait), so that the pipeline gives the model each
# photo alone, as `gazecrop.crop` does (a batched convolution may differ in a float's last bits).
PHOTOS = ["kodak/kodim23.png", "skimage/astronaut.png", "exif_orientation/Portrait_6.jpg"]
RATIOS = "1:1,16:9,9:16,1.91:1"
CANDIDATES = 2


@pytest.fixture(scope="module")
def pipeline_run(fixtures_dir, tmp_path_factory):
    """`gazecrop run` over the photos: {file name: {(ratio, rank): metadata row}}, and the input folder."""
    from gazecrop.model.loading import BUNDLED
    if not BUNDLED["default"].is_file():
        pytest.skip(f"bundled weights {BUNDLED['default']} are not in the tree yet")
    inputs = tmp_path_factory.mktemp("api-in")
    for relpath in PHOTOS:
        shutil.copy(fixtures_dir / relpath, inputs / os.path.basename(relpath))
    root = tmp_path_factory.mktemp("api-out")
    run_gazecrop(["--input", str(inputs / "*"), "--output", str(root), "--model", "default",
                  "--aspect_ratios", RATIOS, "--candidates", str(CANDIDATES)])
    metadata, errors = read_tables(root)
    assert errors == []
    rows: dict[str, dict] = {}
    for row in metadata:
        rows.setdefault(os.path.basename(row["source_uri"]), {})[(row["aspect_ratio"], row["rank"])] = row
    assert sorted(rows) == sorted(os.path.basename(p) for p in PHOTOS)
    return inputs, rows


def _as_rows(cropped: dict) -> dict:
    """A `Cropped.to_dict()` as {(ratio, rank): the metadata columns it gives}."""
    return {(c["aspect_ratio"], c["rank"]): {
        "source_width": cropped["width"], "source_height": cropped["height"], "crop_x": c["x"], "crop_y": c["y"],
        "crop_width": c["width"], "crop_height": c["height"], "focal_x": c["focal_x"], "focal_y": c["focal_y"],
        "saliency_kept": c["saliency_kept"]} for c in cropped["crops"]}


def _pipeline_columns(rows: dict) -> dict:
    keys = ("source_width", "source_height", "crop_x", "crop_y", "crop_width", "crop_height", "focal_x", "focal_y",
            "saliency_kept")
    return {key: {k: row[k] for k in keys} for key, row in rows.items()}


def test_library_call_gives_the_pipelines_numbers(pipeline_run):
    import gazecrop
    inputs, rows = pipeline_run
    for name, expected in rows.items():
        cropped = gazecrop.crop(inputs / name, aspect_ratios=RATIOS, candidates=CANDIDATES)
        assert cropped.source == str(inputs / name)
        assert cropped.model_version == next(iter(expected.values()))["model_version"]
        assert _as_rows(cropped.to_dict()) == _pipeline_columns(expected), name  # exact, floats included
        assert cropped["16x9"].box == (expected[("16:9", 0)]["crop_x"], expected[("16:9", 0)]["crop_y"],
                                       expected[("16:9", 0)]["crop_width"], expected[("16:9", 0)]["crop_height"])
    portrait = rows["Portrait_6.jpg"][("1:1", 0)]
    assert (portrait["source_width"], portrait["source_height"]) == (1200, 1800)  # EXIF orientation applied


def test_an_array_gives_what_its_file_gives(pipeline_run, fixtures_dir):
    import gazecrop
    path = fixtures_dir / "kodak" / "kodim23.png"  # a PNG: no EXIF, no reduced decode
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    from_array = gazecrop.crop(rgb, aspect_ratios=("1:1", (16, 9)))
    from_file = gazecrop.crop(path, aspect_ratios="1:1,16:9")
    assert from_array.source is None
    assert from_array.crops == from_file.crops and (from_array.width, from_array.height) == (768, 512)


@pytest.mark.parametrize("kwargs, received", [
    ({"image": [[0]]}, "Received: image of type list"),
    ({"image": np.zeros((4, 4), np.uint8)}, "Received: image.shape=(4, 4)"),
    ({"image": np.zeros((4, 4, 3), np.float32)}, "image.dtype=float32"),
    ({"aspect_ratios": "16-9"}, "Received: aspect_ratios='16-9'"),
    ({"aspect_ratios": ["1:1", "1:1"]}, "Received: aspect_ratios=['1:1', '1:1']"),
    ({"model": "nope"}, "Received: model='nope'"),
    ({"candidates": 0}, "Received: candidates=0"),
    ({"min_scale": 1.5}, "Received: min_scale=1.5"),
    ({"focus": (1, 2, 3)}, "Received: focus=(1, 2, 3)"),
    ({"max_megapixels": 0}, "Received: max_megapixels=0"),
])
def test_bad_arguments_are_refused_before_any_work(kwargs, received, tmp_path):
    import gazecrop
    kwargs = {"image": tmp_path / "not-read.jpg", **kwargs}
    with pytest.raises((TypeError, ValueError), match="Received: ") as info:
        gazecrop.crop(**kwargs)
    assert received in str(info.value)


def test_an_undecodable_file_is_named(fixtures_dir):
    import gazecrop
    from gazecrop.decode import DecodeError
    broken = fixtures_dir / "corrupt" / "not_an_image.jpg"
    with pytest.raises(DecodeError, match="not_an_image.jpg: not a recognised image format"):
        gazecrop.crop(broken)


def test_command_prints_the_pipelines_numbers_writes_its_crops_and_names_a_broken_file(
        pipeline_run, fixtures_dir, tmp_path):
    inputs, rows = pipeline_run
    names = sorted(rows)
    files = [str(inputs / names[0]), str(fixtures_dir / "corrupt" / "not_an_image.jpg")]
    files += [str(inputs / name) for name in names[1:]]
    out = tmp_path / "crops"
    done = subprocess.run([sys.executable, "-m", "gazecrop.pipeline.cli", "crop", *files, "--json",
                           "--aspect_ratios", RATIOS, "--candidates", str(CANDIDATES), "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    # Only gazecrop's own line on the console: TensorFlow's C++ lines went to the temporary log.
    assert done.stderr.strip().splitlines() == [
        f"gazecrop crop: cannot crop {files[1]}: not a recognised image format (21 bytes)"], done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["source"] for p in printed] == [files[0], *files[2:]]
    for cropped in printed:
        expected = rows[os.path.basename(cropped["source"])]
        assert _as_rows(cropped) == _pipeline_columns(expected)
        for (ratio, rank), row in expected.items():
            suffix = f".rank{rank}" if rank else ""
            written = out / ratio.replace(":", "x") / f"{os.path.basename(cropped['source'])}{suffix}.jpg"
            image = cv2.imread(str(written))
            assert image.shape[:2] == (row["crop_height"], row["crop_width"]), written
            with open(row["output_uri"], "rb") as f:  # cut and encoded as the pipeline does: the same bytes
                assert written.read_bytes() == f.read(), written


def test_command_table_and_usage_errors(pipeline_run, capsys):
    from gazecrop.pipeline.cli import main
    inputs, rows = pipeline_run
    assert main(["crop", str(inputs / "astronaut.png"), "--aspect_ratios", "1:1,16x9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = rows["astronaut.png"][("16:9", 0)]
    assert lines[0] == f"{inputs / 'astronaut.png'}  512x512"
    assert lines[2].split()[:4] == ["16:9", f"x={row['crop_x']}", f"y={row['crop_y']}",
                                    f"{row['crop_width']}x{row['crop_height']}"]
    assert main(["crop", str(inputs / "astronaut.png"), "--aspect_ratios", "16-9"]) == 2
    assert "Received: '16-9'" in capsys.readouterr().err
    assert main(["crop"]) == 2


def test_docstring_example(pipeline_run):
    import gazecrop.api
    assert doctest.testmod(gazecrop.api, raise_on_error=True).attempted >= 5
