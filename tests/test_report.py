"""pipeline/report.py: a run's output root built by hand from real fixture photos, then the report,
checked for structure and, in a real headless Chromium, for what a person sees."""

import datetime
import html.parser
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gazecrop.pipeline import report
from gazecrop.search import CropConfig, choose_crops, focal_point, ratio_dirname

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "data" / "fixtures"
HOSTILE_NAME = '<b>bold<b> & "quoted" <i>x.png'
HOSTILE_MESSAGE = '<img src=x onerror="document.body.dataset.pwned=1"> cannot decode'
RATIOS = ((1, 1), (16, 9), (9, 16), (4, 5))


def _chromium():
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _blob(h, w, cy, cx, sigma):
    yy, xx = np.mgrid[0:h, 0:w]
    ld = -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)
    return (ld - np.log(np.exp(ld).sum())).astype(np.float32)


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    """ROOT/{metadata,errors,crops,saliency} as a pipeline run writes them, for four real photos."""
    sources = [FIXTURES / "kodak/kodim23.png", FIXTURES / "skimage/astronaut.png",
               FIXTURES / "exif_orientation/Portrait_6.jpg"]
    if not all(p.exists() for p in sources):
        pytest.skip("shared fixtures absent")
    tmp = tmp_path_factory.mktemp("report")
    inputs = tmp / "in"
    inputs.mkdir()
    hostile = inputs / HOSTILE_NAME
    shutil.copy(FIXTURES / "kodak/kodim05.png", hostile)
    root = tmp / "out"
    config = CropConfig(aspect_ratios=RATIOS, candidates=2)
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    rows = []
    for k, path in enumerate(sources + [hostile]):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)          # EXIF orientation applied
        height, width = image.shape[:2]
        relpath = path.name
        ld = _blob(24, 32, 6 + 4 * k, 8 + 6 * k, 3 + k)
        if k != 2:                                               # one image without a saved map
            sal = root / "saliency" / f"{relpath}.npy"
            sal.parent.mkdir(parents=True, exist_ok=True)
            np.save(sal, ld)
        fx, fy = focal_point(ld, (width, height))
        for crop in choose_crops(ld[None], [(width, height)], config)[0]:
            ratio = tuple(int(v) for v in crop.aspect_ratio.split(":"))
            out = root / "crops" / ratio_dirname(ratio) / (f"{relpath}.jpg" if crop.rank == 0
                                                           else f"{relpath}.rank{crop.rank}.jpg")
            out.parent.mkdir(parents=True, exist_ok=True)
            piece = image[crop.y:crop.y + crop.height, crop.x:crop.x + crop.width]
            assert cv2.imwrite(str(out), piece)
            rows.append(dict(
                source_uri=str(path), source_sha256="0" * 64, source_width=width, source_height=height,
                aspect_ratio=crop.aspect_ratio, crop_x=crop.x, crop_y=crop.y, crop_width=crop.width,
                crop_height=crop.height, focal_x=fx, focal_y=fy, saliency_kept=crop.saliency_kept,
                output_uri=str(out), output_width=crop.width, output_height=crop.height,
                model_version="abc123def456", processed_at=now, rank=crop.rank))
    (root / "metadata").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "metadata" / "metadata-00000-of-00001.parquet")
    (root / "errors").mkdir()
    pq.write_table(pa.Table.from_pylist([dict(
        source_uri=str(inputs / "broken <script>.jpg"), stage="decode", error_type="DecodeError",
        message=HOSTILE_MESSAGE, processed_at=now)]), root / "errors" / "errors-00000-of-00001.parquet")
    return root, rows


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_structure(run_root, tmp_path):
    root, rows = run_root
    out = tmp_path / "r.html"
    assert report.main([str(root), "--output", str(out)]) == 0
    page = _Collector()
    page.feed(out.read_text())
    tags = page.tags
    sections = [a for t, a in tags if t == "section"]
    assert len(sections) == 4
    confidences = [float(a["data-confidence"]) for a in sections]
    assert confidences == sorted(confidences)                    # least confident first
    expected = min(min(r["saliency_kept"] for r in rows if r["source_uri"] == uri and r["rank"] == 0)
                   for uri in {r["source_uri"] for r in rows})
    assert confidences[0] == pytest.approx(expected, abs=1e-6)
    imgs = [a for t, a in tags if t == "img"]
    assert len(imgs) == 4 + len(rows)                            # every source and every crop
    assert all(a["src"].startswith("data:image/jpeg;base64,") for a in imgs)   # self-contained
    assert not any(t in ("link",) or a.get("src", "data:").startswith(("http", "file", "/"))
                   for t, a in tags)
    # names and messages stay text: no <b>/<i> from the file name, no onerror from the message
    assert not any(t in ("i",) for t, a in tags)
    assert sum(1 for t, a in tags if t == "b") == len(rows)     # only the captions' own <b>
    assert not any("onerror" in a for t, a in tags)
    assert sum(1 for t, a in tags if t == "script") == 1
    assert sum(1 for t, a in tags if t == "rect") == len(rows)
    # the image without a saved map says how to get one
    assert "--saliency_preview=false" in out.read_text()
    assert "&lt;b&gt;bold&lt;b&gt; &amp; &quot;quoted&quot;" in out.read_text()


def test_report_default_output_and_missing_root(run_root, tmp_path, capsys):
    root, _ = run_root
    assert report.main([str(root), "--limit", "2"]) == 0
    text = (root / "report.html").read_text()
    assert text.count("<section") == 2 and "showing the 2 least confident of 4" in text
    assert report.main([str(tmp_path / "nothing")]) == 2
    assert "no metadata" in capsys.readouterr().err


def test_heat_overlay_tints_the_salient_place():
    grey = np.full((60, 80, 3), 128, np.uint8)
    out = report.heat_overlay(grey, _blob(6, 8, 1, 6, 1))
    assert out.shape == grey.shape
    assert int(out[10, 60].sum()) > int(out[50, 10].sum()) + 60   # bright where the density is


def _run_chromium(args, tmp_path, timeout=120):
    exe = _chromium()
    profile = tmp_path / "profile"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout, text=True)


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_report_in_headless_chromium(run_root, tmp_path):
    root, rows = run_root
    out = tmp_path / "report.html"
    report.write_report(str(root), str(out))
    url = out.as_uri()

    # The DOM after load: the page's own script counts images with naturalWidth > 0.
    dom = _run_chromium(["--virtual-time-budget=15000", "--dump-dom", url], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(1))
    broken = re.search(r'data-images-broken="(\d+)"', body.group(1))
    assert loaded and broken, body.group(1)
    assert int(loaded.group(1)) == 4 + len(rows) and int(broken.group(1)) == 0
    assert "pwned" not in body.group(1)                          # the hostile message did not run

    # Pixels: the screenshot shows pictures, the ratio colours' rectangles and the heat map.
    shot = tmp_path / "shot.png"
    result = _run_chromium([f"--screenshot={shot}", "--window-size=1280,1600",
                            "--virtual-time-budget=15000", url], tmp_path)
    assert shot.exists(), result.stderr[-2000:]
    pixels = cv2.imread(str(shot), cv2.IMREAD_COLOR).astype(np.int32)
    b, g, r = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    background = (np.abs(r - 0x1e) < 6) & (np.abs(g - 0x1f) < 6) & (np.abs(b - 0x22) < 6)
    panel = (np.abs(r - 0x2b) < 6) & (np.abs(g - 0x2d) < 6) & (np.abs(b - 0x31) < 6)
    assert (~background & ~panel).mean() > 0.25                  # mostly pictures, not empty page
    magenta = (r > 200) & (g < 90) & (b > 200)                   # 1:1 rectangles and frames
    cyan = (r < 90) & (g > 190) & (b > 220)                      # 16:9
    assert magenta.sum() > 200 and cyan.sum() > 200
    # many distinct colours: real photos, not placeholders
    assert len(np.unique(pixels.reshape(-1, 3) // 16, axis=0)) > 300


def test_headings_are_paths_relative_to_the_inputs_common_folder():
    uris = ["gs://b/photos/a.jpg", "gs://b/photos/x/b.jpg"]
    assert report.common_folder(uris) == "gs://b/photos"
    assert [report.short_name(u, "gs://b/photos") for u in uris] == ["a.jpg", "x/b.jpg"]
    assert report.common_folder(["/in/a.png"]) == "/in"
    assert report.common_folder(["/in/a.png", "/other/b.png"]) == ""      # only the root: whole paths
    assert report.short_name("/other/b.png", "") == "/other/b.png"
    assert report.short_name("gs://b/photosx/c.jpg", "gs://b/photos") == "gs://b/photosx/c.jpg"
