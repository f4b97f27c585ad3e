"""`python -m gazecrop.tools.readme_picture`: the README's before/after picture, made from a real photo.

    python -m gazecrop.tools.readme_picture --output docs/before-after.jpg [--photo PATH] [--ratio 16:9]

1. Runs `gazecrop run` (the installed command's own code, in a child process, default model) on one photo
   into a temporary folder with `--save_saliency`, so the boxes drawn are exactly the rows a user gets.
2. Left: the photo under its predicted saliency (the report's heat map) with the 1:1, 16:9 and 4:5 boxes
   and the saliency peak. Right: for `--ratio`, the centre crop of the same size above gazecrop's crop,
   each labelled with the share of predicted attention it keeps.

The default photo is scikit-image's `astronaut.png` (Eileen Collins, NASA: public domain), from the
fixtures beside the checkout (`../shared/data/fixtures/skimage`). Research command: it imports the library
and ships to no worker.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from gazecrop.pipeline.report import tint
from gazecrop.search import _densities
from gazecrop.transforms.write import relative_density

_REPO = Path(__file__).resolve().parents[1]
PHOTO = Path(os.environ.get("GAZECROP_SHARED", _REPO.parent / "shared")) / "data/fixtures/skimage/astronaut.png"
RATIOS = ("1:1", "16:9", "4:5")
# One colour per ratio (BGR), as distinct on the heat map as on the photo.
COLOURS = {"1:1": (255, 200, 60), "16:9": (80, 255, 80), "4:5": (60, 200, 255)}
PANEL = 640  # the photo panel's long side, pixels
GAMMA = 0.4  # the heat map's display curve: the density falls off fast, so its tail is lifted to be seen
FONT = cv2.FONT_HERSHEY_SIMPLEX


def run_gazecrop(photo: Path, workdir: Path, ratios=RATIOS) -> tuple[list[dict], np.ndarray]:
    """The metadata rows and the saliency map (log-density, model resolution) of ``photo``."""
    import pyarrow.parquet as pq

    inputs, output = workdir / "in", workdir / "out"
    inputs.mkdir()
    (inputs / photo.name).symlink_to(photo.resolve())
    subprocess.run([sys.executable, "-m", "gazecrop.pipeline.cli", "run", "--input", str(inputs),
                    "--output", str(output), "--aspect_ratios", ",".join(ratios), "--model", "default",
                    "--save_saliency", "--progress", "off"], check=True, stdout=subprocess.DEVNULL)
    rows = pq.read_table(output / "metadata").to_pylist()
    (saliency,) = (output / "saliency").glob("*.npy")
    return rows, np.load(saliency)


def kept(log_density: np.ndarray, source_size, box) -> float:
    """Share of the predicted attention inside ``box`` (x, y, w, h in source pixels): the density is
    constant per map cell, so the box's mass is read from the cells' summed-area table, bilinearly."""
    density = _densities(log_density[None])[0]
    h, w = density.shape
    table = np.zeros((h + 1, w + 1))
    table[1:, 1:] = density.cumsum(0).cumsum(1)
    (width, height), (x, y, bw, bh) = source_size, box

    def corner(px, py):
        u, v = min(px * w / width, w), min(py * h / height, h)
        j, i = min(int(u), w - 1), min(int(v), h - 1)
        fu, fv = u - j, v - i
        top = table[i, j] * (1 - fu) + table[i, j + 1] * fu
        bottom = table[i + 1, j] * (1 - fu) + table[i + 1, j + 1] * fu
        return top * (1 - fv) + bottom * fv

    return float(corner(x + bw, y + bh) - corner(x, y + bh) - corner(x + bw, y) + corner(x, y))


def label(image: np.ndarray, text: str, height=34, scale=0.62) -> np.ndarray:
    """``image`` with a white caption strip above it."""
    strip = np.full((height, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (8, height - 11), FONT, scale, (30, 30, 30), 1, cv2.LINE_AA)
    return np.vstack([strip, image])


def left_panel(bgr: np.ndarray, log_density: np.ndarray, rows: list[dict]) -> np.ndarray:
    """The photo under its heat map, with every ratio's rank-0 box and the saliency peak."""
    scale = PANEL / max(bgr.shape[:2])
    size = (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale))
    heat = tint(bgr, relative_density(log_density) ** GAMMA, strength=0.75)
    out = cv2.resize(cv2.addWeighted(heat, 0.75, bgr, 0.25, 0), size, interpolation=cv2.INTER_AREA)
    for row in sorted(rows, key=lambda r: -r["crop_width"] * r["crop_height"]):
        x0, y0 = round(row["crop_x"] * scale), round(row["crop_y"] * scale)
        x1 = round((row["crop_x"] + row["crop_width"]) * scale) - 2
        y1 = round((row["crop_y"] + row["crop_height"]) * scale) - 2
        colour = COLOURS.get(row["aspect_ratio"], (255, 255, 255))
        cv2.rectangle(out, (x0 + 1, y0 + 1), (x1, y1), colour, 3, cv2.LINE_AA)
        cv2.putText(out, row["aspect_ratio"], (x0 + 8, y1 - 10), FONT, 0.7, colour, 2, cv2.LINE_AA)
    fx, fy = round(rows[0]["focal_x"] * scale), round(rows[0]["focal_y"] * scale)
    cv2.circle(out, (fx, fy), 9, (255, 255, 255), 2, cv2.LINE_AA)
    return label(out, "predicted saliency and the chosen 1:1, 16:9, 4:5 crops")


def right_panel(bgr: np.ndarray, log_density: np.ndarray, row: dict, width: int) -> np.ndarray:
    """The centre crop of ``row``'s size above gazecrop's crop, each with the attention it keeps."""
    height, source_width = bgr.shape[:2]
    x, y, w, h = row["crop_x"], row["crop_y"], row["crop_width"], row["crop_height"]
    centre = ((source_width - w) // 2, (height - h) // 2, w, h)
    parts = []
    for name, (bx, by, bw, bh), share in (
            ("centre crop", centre, kept(log_density, (source_width, height), centre)),
            ("gazecrop", (x, y, w, h), row["saliency_kept"])):
        crop = bgr[by:by + bh, bx:bx + bw]
        crop = cv2.resize(crop, (width, round(bh * width / bw)), interpolation=cv2.INTER_AREA)
        parts.append(label(crop, f"{row['aspect_ratio']} {name}: keeps {share:.0%} of the attention"))
    return np.vstack([parts[0], np.full((12, width, 3), 255, np.uint8), parts[1]])


def picture(photo: Path, ratio: str = "16:9") -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="gazecrop-picture-") as workdir:
        rows, log_density = run_gazecrop(photo, Path(workdir))
    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    rows = [row for row in rows if row["rank"] == 0]
    (chosen,) = [row for row in rows if row["aspect_ratio"] == ratio]
    left = left_panel(bgr, log_density, rows)
    # The right column as tall as the left: two captions, a gap and two crops of the ratio.
    right = right_panel(bgr, log_density, chosen, width=round((left.shape[0] - 80) * chosen["crop_width"]
                                                               / (2 * chosen["crop_height"])))
    canvas = np.full((max(left.shape[0], right.shape[0]), left.shape[1] + right.shape[1] + 36, 3), 255, np.uint8)
    canvas[:left.shape[0], :left.shape[1]] = left
    top = (canvas.shape[0] - right.shape[0]) // 2
    canvas[top:top + right.shape[0], left.shape[1] + 24:left.shape[1] + 24 + right.shape[1]] = right
    return canvas


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="docs/before-after.jpg", help="the JPEG to write")
    parser.add_argument("--photo", default=str(PHOTO), help="the photo (default: the public-domain astronaut)")
    parser.add_argument("--ratio", default="16:9", choices=RATIOS, help="the ratio compared with a centre crop")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality")
    args = parser.parse_args(argv)
    image = picture(Path(args.photo), args.ratio)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, args.quality,
                                            cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    if not ok:
        raise SystemExit("JPEG encoding failed")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_bytes(data.tobytes())
    print(f"wrote {args.output}: {image.shape[1]}x{image.shape[0]}, {len(data) // 1000} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
