"""The model commands (predict, evaluate, bench) run end to end with the tiny model."""

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from gazecrop.model import predict
from gazecrop.tools import model_bench as bench, evaluate
from gazecrop.model.saliency import logsumexp

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fixtures"


def test_predict_writes_source_resolution_maps_and_reports_failures(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("kodim04.png", "kodim23.png"):
        (inputs / name).write_bytes((FIXTURES / "kodak" / name).read_bytes())
    (inputs / "Landscape_6.jpg").write_bytes((FIXTURES / "exif_orientation" / "Landscape_6.jpg").read_bytes())
    (inputs / "broken.jpg").write_text("not an image")
    out = tmp_path / "out"
    code = predict.main(["--input", str(inputs), "--output", str(out), "--heatmap", "--model", "tiny"])
    assert code == 1  # one input failed
    assert "FAILED" in capsys.readouterr().err
    ld = np.load(out / "kodim04.npy")
    assert ld.shape == (768, 512) and ld.dtype == np.float32  # kodim04 is a portrait
    assert logsumexp(ld) == pytest.approx(0.0, abs=1e-4)
    assert np.load(out / "Landscape_6.npy").shape == (1200, 1800)  # EXIF orientation applied
    heat = cv2.imread(str(out / "kodim23.png"))
    assert heat.shape == (512, 768, 3)
    assert not (out / "broken.npy").exists()


def test_predict_glob_all_good_exits_zero(tmp_path):
    code = predict.main(["--input", str(FIXTURES / "kodak" / "kodim0[12].png"),
                         "--output", str(tmp_path), "--model", "tiny"])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kodim01.npy", "kodim02.npy"]


def _tiny_dataset(root):
    (root / "stimuli").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, (h, w) in enumerate([(120, 160), (160, 120)]):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "stimuli" / f"im{i}.png"), img)
        for k in range(20):
            rows.append([f"im{i}.png", k % 3, k, rng.uniform(0, w), rng.uniform(0, h), 200])
    with (root / "fixations.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "subject", "index", "x", "y", "duration_ms"])
        writer.writerows(rows)
    (root / "list.txt").write_text("im0.png\nim1.png\n")


def test_evaluate_prints_three_models_side_by_side(tmp_path, capsys):
    _tiny_dataset(tmp_path)
    code = evaluate.main(["--dataset", str(tmp_path), "--images", str(tmp_path / "list.txt"),
                          "--model", "tiny", "--json", str(tmp_path / "r.json")])
    assert code == 0
    out = capsys.readouterr().out
    for name in ("| model |", "| centre bias | 0.000 |", "| spectral residual |"):
        assert name in out
    assert "CC against blurred fixations maps" in out


def test_bench_runs_and_measures_the_head(capsys):
    from gazecrop.model import load_model

    rows = bench.bench(load_model("tiny"), [(224, 224)], [1, 2], repeats=1, log=lambda *_: None)
    assert [r["batch"] for r in rows] == [1, 2]
    assert all(r["images_per_s"] > 0 and 0 < r["outside_body_share"] for r in rows)
