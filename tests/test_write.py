"""Write stage (transforms/write.py) and the tables (transforms/metadata.py) on plain functions."""

from __future__ import annotations

import datetime
import os

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from gazecrop.search import Crop, CropConfig
from gazecrop.transforms.metadata import ERRORS_SCHEMA, WriteTable, read_table
from gazecrop.records import CroppedImage, SaliencyImage, error_row
from gazecrop.transforms.dead_letters import dead_letter_rows
from gazecrop.transforms.write import (PREVIEW_LONG_SIDE, OutputConfig, crop_uri, cut, encode,
                                       output_encoding, output_size, relpath_of_output, saliency_preview,
                                       saliency_preview_uri, saliency_uri, settings_id, write_atomically,
                                       write_crops, write_reduction)


def _png(rgb):
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def test_output_size_downscales_only():
    assert output_size(4000, 2250, 0) == (4000, 2250)
    assert output_size(4000, 2250, 1600) == (1600, 900)
    assert output_size(800, 600, 1600) == (800, 600)


def test_output_paths_and_relpath_round_trip():
    uri = crop_uri("gs://b/out", "16x9", "cat/a.png", "jpg")
    assert uri == "gs://b/out/crops/16x9/cat/a.png.jpg"
    assert relpath_of_output("gs://b/out", uri) == "cat/a.png"
    assert relpath_of_output("out", crop_uri(os.path.abspath("out"), "1x1", "a.b.jpg", "png")) == "a.b.jpg"
    assert saliency_uri("/o", "cat/a.png") == "/o/saliency/cat/a.png.npy"
    # Rank k > 0 candidates: <relpath>.rank<k>.<ext>; rank 0 keeps the plain name.
    assert crop_uri("gs://b/out", "16x9", "cat/a.png", "jpg", 0) == uri
    ranked = crop_uri("gs://b/out", "16x9", "cat/a.png", "jpg", 2)
    assert ranked == "gs://b/out/crops/16x9/cat/a.png.rank2.jpg"
    assert relpath_of_output("gs://b/out", ranked, 2) == "cat/a.png"
    # Rank 0 strips nothing: the rank column, not the name, says which crop a file is.
    assert relpath_of_output("gs://b/out", crop_uri("gs://b/out", "1x1", "b.rank1", "jpg"), 0) == "b.rank1"
    with pytest.raises(ValueError, match="rank-3"):
        relpath_of_output("gs://b/out", ranked, 3)


def test_source_format_keeps_jpeg_png_webp_and_writes_others_as_png():
    config = OutputConfig(root="/o", output_format="source")
    assert [output_encoding(config, f) for f in ("JPEG", "PNG", "WEBP", "GIF", "TIFF")] == \
        ["jpeg", "png", "webp", "png", "png"]
    assert output_encoding(OutputConfig(root="/o", output_format="webp"), "JPEG") == "webp"
    with pytest.raises(ValueError, match="output_format"):
        OutputConfig(root="/o", output_format="gif")


@pytest.mark.parametrize("encoding", ["jpeg", "png", "webp"])
def test_encoding_is_deterministic(encoding):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert encode(rgb, encoding, 85) == encode(rgb.copy(), encoding, 85)


def test_cut_refuses_crops_outside_the_source():
    pixels = np.zeros((10, 20, 3), np.uint8)
    assert cut(pixels, Crop("1:1", 5, 0, 10, 10, 1.0), 0).shape == (10, 10, 3)
    assert cut(pixels, Crop("1:1", 5, 0, 10, 10, 1.0), 4).shape == (4, 4, 3)
    with pytest.raises(ValueError, match="outside"):
        cut(pixels, Crop("1:1", 15, 0, 10, 10, 1.0), 0)


def test_write_atomically_replaces_and_leaves_no_temporary(tmp_path):
    target = str(tmp_path / "d" / "x.bin")
    write_atomically(target, b"first")
    write_atomically(target, b"second")
    assert (tmp_path / "d" / "x.bin").read_bytes() == b"second"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["x.bin"]


def test_write_crops_writes_files_rows_and_saliency(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    data = _png(rgb)
    log_density = np.full((224, 384), -np.log(224 * 384), np.float32)
    image = SaliencyImage(uri="/in/p.png", relpath="sub/p.png", data=data, sha256="s", source_width=160,
                          source_height=90, log_density=log_density, model_version="v")
    crops = (Crop("1:1", 35, 0, 90, 90, 0.5), Crop("16:9", 0, 0, 160, 90, 1.0))
    config = OutputConfig(root=str(tmp_path), output_format="png", save_saliency=True)
    rows = write_crops(CroppedImage(image=image, crops=crops, focal_x=80, focal_y=45), config)
    assert [r["aspect_ratio"] for r in rows] == ["1:1", "16:9"]
    square = cv2.cvtColor(cv2.imread(rows[0]["output_uri"]), cv2.COLOR_BGR2RGB)
    assert np.array_equal(square, rgb[:, 35:125])  # PNG: lossless
    assert rows[0]["output_uri"] == str(tmp_path / "crops" / "1x1" / "sub" / "p.png.png")
    assert np.array_equal(np.load(tmp_path / "saliency" / "sub" / "p.png.npy"), log_density)
    assert [r["rank"] for r in rows] == [0, 0]


def test_saliency_preview_is_a_small_grey_png_of_the_density_and_shapes_no_crop():
    yy, xx = np.mgrid[0:224, 0:336]
    log_density = -((yy - 50.0) ** 2 + (xx - 250.0) ** 2) / (2 * 30.0 ** 2)
    data = saliency_preview(log_density)
    assert data == saliency_preview(log_density)                         # deterministic bytes
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert grey.dtype == np.uint8 and grey.shape == (85, PREVIEW_LONG_SIDE)  # the map's shape, shrunk
    y, x = np.unravel_index(np.argmax(grey), grey.shape)
    assert grey.max() == 255 and abs(y - 50 * 128 / 336) <= 1.5 and abs(x - 250 * 128 / 336) <= 1.5
    assert saliency_preview(np.full((4, 4), -np.inf))                    # an empty map: an all-black preview
    assert saliency_preview_uri("/o", "a.png") == "/o/saliency/a.png.png"
    crop = CropConfig(aspect_ratios=((1, 1),))                           # no crop or config_id changes
    assert settings_id(crop, OutputConfig("/o")) == settings_id(crop, OutputConfig("/o", saliency_preview=False))


def test_write_crops_names_ranked_candidates(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    image = SaliencyImage(uri="/in/p.png", relpath="p.png", data=_png(rgb), sha256="s", source_width=160,
                          source_height=90, log_density=np.zeros((4, 4), np.float32), model_version="v")
    crops = (Crop("1:1", 35, 0, 90, 90, 0.5), Crop("1:1", 0, 0, 90, 90, 0.3, rank=1),
             Crop("1:1", 70, 0, 90, 90, 0.2, rank=2))
    rows = write_crops(CroppedImage(image=image, crops=crops, focal_x=80, focal_y=45),
                       OutputConfig(root=str(tmp_path), output_format="png"))
    assert [(r["rank"], r["crop_x"], os.path.basename(r["output_uri"])) for r in rows] == [
        (0, 35, "p.png.png"), (1, 0, "p.png.rank1.png"), (2, 70, "p.png.rank2.png")]
    for row in rows:
        x = row["crop_x"]
        assert np.array_equal(cv2.cvtColor(cv2.imread(row["output_uri"]), cv2.COLOR_BGR2RGB), rgb[:, x:x + 90])


def test_write_reduction_only_for_jpeg_crops_shrunk_at_least_twice():
    crops = [Crop("1:1", 0, 0, 3000, 3000, 1.0), Crop("16:9", 0, 0, 4000, 2250, 1.0)]
    assert write_reduction("JPEG", crops, 0) == 1           # no --max_output_side: full scale
    assert write_reduction("PNG", crops, 400) == 1          # only libjpeg scales while decoding
    assert write_reduction("JPEG", crops, 1000) == 2        # the 1:1 crop at 1/4 would be 750 px < 1000
    assert write_reduction("JPEG", crops, 300) == 8
    assert write_reduction("JPEG", crops, 2000) == 1        # 3000 / 2 = 1500 < 2000


def test_reduced_scale_write_matches_full_scale_write(tmp_path):
    """A JPEG decoded at 1/4 for 64 px crops gives the crops a full decode gives, within JPEG noise."""
    from gazecrop.pipeline.demo import draw_scene
    rgb = draw_scene(1200, 800, seed=4)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    image = SaliencyImage(uri="/in/p.jpg", relpath="p.jpg", data=buf.tobytes(), sha256="s", source_width=1200,
                          source_height=800, log_density=np.zeros((4, 4), np.float32), model_version="v")
    crops = (Crop("1:1", 300, 0, 800, 800, 1.0), Crop("16:9", 0, 100, 1200, 675, 1.0))
    assert write_reduction("JPEG", list(crops), 200) == 2
    assert write_reduction("JPEG", list(crops), 64) == 8
    item = CroppedImage(image=image, crops=crops, focal_x=600, focal_y=400)
    outputs = {}
    for side in (200, 64):
        rows = write_crops(item, OutputConfig(root=str(tmp_path / str(side)), output_format="png",
                                              max_output_side=side))
        assert [(r["output_width"], r["output_height"]) for r in rows] == [(side, side), output_size(1200, 675, side)]
        outputs[side] = [cv2.imread(r["output_uri"]).astype(int) for r in rows]
    for crop, got in zip(crops, outputs[64]):  # 1/8-scale decode against the source pixels, shrunk
        region = rgb[crop.y:crop.y + crop.height, crop.x:crop.x + crop.width]
        expected = cv2.cvtColor(cv2.resize(region, (got.shape[1], got.shape[0]), interpolation=cv2.INTER_AREA),
                                cv2.COLOR_RGB2BGR).astype(int)
        assert np.abs(got - expected).mean() < 3


def test_dead_letters_become_one_error_row_per_element():
    try:
        raise ValueError("bad pixels")
    except ValueError as exc:
        import traceback
        info = (type(exc), repr(exc), traceback.format_exception(exc))
    batch = [SaliencyImage("/a", "a", b"", "", 1, 1, None, "v"), SaliencyImage("/b", "b", b"", "", 1, 1, None, "v")]
    rows = dead_letter_rows((batch, info), stage="crop")
    assert [(r["source_uri"], r["stage"], r["error_type"], r["message"]) for r in rows] == [
        ("/a", "crop", "ValueError", "bad pixels"), ("/b", "crop", "ValueError", "bad pixels")]


def test_an_empty_errors_table_is_still_a_readable_file(tmp_path):
    with TestPipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create([]) | WriteTable(root=str(tmp_path), name="errors", schema=ERRORS_SCHEMA)
    table = read_table(str(tmp_path), "errors")
    assert table.num_rows == 0 and table.schema.equals(ERRORS_SCHEMA)


def test_metadata_rows_have_the_metadata_schema_columns(tmp_path):
    from gazecrop.transforms.metadata import METADATA_SCHEMA
    rgb = np.zeros((20, 30, 3), np.uint8)
    image = SaliencyImage(uri="/in/q.png", relpath="q.png", data=_png(rgb), sha256="s", source_width=30,
                          source_height=20, log_density=np.zeros((4, 4), np.float32), model_version="v")
    (row,) = write_crops(CroppedImage(image=image, crops=(Crop("1:1", 0, 0, 20, 20, 1.0),), focal_x=1,
                                      focal_y=1), OutputConfig(root=str(tmp_path)))
    assert list(row) == METADATA_SCHEMA.names
    assert METADATA_SCHEMA.field("rank").type == "int32"


def test_a_metadata_row_missing_or_adding_a_column_is_refused():
    from gazecrop.transforms.metadata import METADATA_SCHEMA, metadata_row
    full = {name: None for name in reversed(METADATA_SCHEMA.names)}
    assert list(metadata_row(full)) == METADATA_SCHEMA.names
    with pytest.raises(ValueError, match=r"missing \['rank'\], unknown \[\]"):
        metadata_row({k: v for k, v in full.items() if k != "rank"})
    with pytest.raises(ValueError, match=r"missing \[\], unknown \['crop_area'\]"):
        metadata_row({**full, "crop_area": 1})


def test_error_row_has_the_errors_schema_columns():
    row = error_row("/x", "decode", "E", "m", datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
    assert list(row) == ERRORS_SCHEMA.names
