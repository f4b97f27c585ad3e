"""Model metadata without TensorFlow (issue 15): a weights file records its model's version, input short side
and body; building a job reads them with h5py and imports neither TensorFlow nor Keras; a file without a
(valid) record falls back to loading the model; a worker refuses a model of another version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from gazecrop.model.card import BUNDLED, DIGEST_ATTR, VERSION_ATTR, read_card
from gazecrop.transforms.inference import DeepGazeModelHandler, ModelInfo, describe_model

REPO = Path(__file__).resolve().parents[1]

# In a fresh interpreter: describe the bundled models and build (not run) a whole batch job on the default
# model, then say which of TensorFlow and Keras got imported.
BUILD_WITHOUT_TENSORFLOW = """
import json, sys
import apache_beam as beam
from gazecrop.pipeline.options import parse
from gazecrop.pipeline.run import build
from gazecrop.transforms.inference import describe_model
infos = {spec: describe_model(spec) for spec in sys.argv[3:]}
announced = []
options, _ = parse(["--input", sys.argv[1], "--output", sys.argv[2], "--model", "default"])
build(beam.Pipeline(), options, announce=announced.append)
print(json.dumps({"infos": {s: [i.version, i.short_side] for s, i in infos.items()}, "announced": announced,
                  "imported": sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras"})}))
"""


def test_describing_the_models_and_building_a_job_import_no_tensorflow(fixtures_dir, tmp_path):
    specs = ["default", "fast", str(BUNDLED["default"])]
    out = subprocess.run([sys.executable, "-c", BUILD_WITHOUT_TENSORFLOW, str(fixtures_dir / "kodak" / "*.png"),
                          str(tmp_path / "out"), *specs], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported"] == []
    assert result["announced"] == []  # nothing loaded, nothing to wait for
    from gazecrop.model import load_model
    for spec in specs:
        loaded = load_model(spec)
        assert result["infos"][spec] == [loaded.version, loaded.short_side], spec


def test_cards_of_the_bundled_models():
    default, fast = read_card("default"), read_card("fast")
    assert (default.short_side, default.body, default.backbone) == (224, "vgg16", "hed")
    assert (fast.short_side, fast.body, fast.backbone) == (128, "vgg16", "in-file")
    assert read_card("tiny") is None


def _copy(tmp_path, name="copy.weights.h5") -> Path:
    path = tmp_path / name
    shutil.copyfile(BUNDLED["default"], path)
    return path


def test_a_file_without_a_record_or_edited_since_is_described_by_loading_it(tmp_path):
    stamped = describe_model("default")
    plain = _copy(tmp_path, "plain.weights.h5")
    with h5py.File(plain, "r+") as f:
        del f.attrs[VERSION_ATTR], f.attrs[DIGEST_ATTR]
    assert read_card(plain) is None
    calls = []
    info = describe_model(str(plain), before_loading=lambda: calls.append(1))
    assert (info.version, info.short_side, calls) == (stamped.version, stamped.short_side, [1])

    edited = _copy(tmp_path, "edited.weights.h5")  # a copy whose arrays changed after stamping
    with h5py.File(edited, "r+") as f:
        weight = f["layers/centre_bias/1"]
        weight[...] = np.asarray(weight[()]) * 1.5
    assert read_card(edited) is None
    assert describe_model(str(edited)).version != stamped.version


def test_save_readout_records_the_version_of_the_model_it_wrote(tmp_path):
    from gazecrop.model import load_model
    from gazecrop.model.loading import save_readout

    fast = load_model("fast")
    path = tmp_path / "resaved.weights.h5"
    save_readout(fast.keras_model, fast.config, path)
    card = read_card(path)
    assert card is not None and (card.version, card.short_side) == (fast.version, fast.short_side)


def test_missing_and_foreign_files_are_refused_as_loading_them_is(tmp_path):
    from gazecrop.model import WeightsError
    with pytest.raises(WeightsError, match="not found"):
        describe_model(str(tmp_path / "nope.weights.h5"))
    foreign = tmp_path / "foreign.weights.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(WeightsError, match="is not a gazecrop-readout file"):
        describe_model(str(foreign))


def test_a_worker_refuses_a_model_of_another_version(tiny_info):
    handler = DeepGazeModelHandler(ModelInfo(spec="tiny", version="0" * 12, short_side=224))
    with pytest.raises(ValueError, match=f"loads as version {tiny_info.version}, the job was built for version 0+"):
        handler.load_model()
    assert DeepGazeModelHandler(tiny_info).load_model().version == tiny_info.version
