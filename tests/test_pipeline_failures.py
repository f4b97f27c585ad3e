"""Failures after decoding still end as exactly one error row per input (inference stage)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from conftest import read_tables
from gazecrop.pipeline.options import parse
from gazecrop.pipeline.run import build, summarize
from gazecrop.transforms.inference import DeepGazeModelHandler, describe_model, predict_by_shape


def refuse_kodim02(model, images, model_version):
    """The default inference function, failing any batch that holds kodim02."""
    if any(image.uri.endswith("kodim02.png") for image in images):
        raise RuntimeError("model failed on this batch")
    return predict_by_shape(model, images, model_version)


def test_a_failed_inference_batch_gives_one_error_row_per_image(fixtures_dir, tmp_path):
    options, beam_args = parse(["--input", str(fixtures_dir / "kodak" / "kodim0[1-4].png"),
                                "--output", str(tmp_path), "--model", "tiny", "--aspect_ratios", "1:1"])
    handler = DeepGazeModelHandler(describe_model("tiny"), inference_fn=refuse_kodim02, max_batch_size=1)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        build(p, options, handler=handler)
    metadata, errors = read_tables(tmp_path)
    assert sorted(r["source_uri"].rsplit("/", 1)[1] for r in metadata) == ["kodim01.png", "kodim03.png", "kodim04.png"]
    assert [(e["source_uri"].rsplit("/", 1)[1], e["stage"], e["error_type"], e["message"]) for e in errors] == [
        ("kodim02.png", "inference", "RuntimeError", "model failed on this batch")]
    assert summarize(str(tmp_path)).failed == {("inference", "RuntimeError"): 1}
