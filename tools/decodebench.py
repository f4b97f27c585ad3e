"""`python -m gazecrop.tools.decodebench`: the decode stage's peak memory for 8- and 16-bit, RGB and RGBA PNGs.

    python -m gazecrop.tools.decodebench --megapixels 48 [--workdir DIR]

1. Writes four PNGs of about `--megapixels` (4:3) with OpenCV into a temporary folder (or `--workdir`,
   where they are kept and reused): 8-bit RGB, 8-bit RGBA, 16-bit RGB and 16-bit RGBA, with smooth
   gradients and an alpha ramp from transparent to opaque, so every conversion step has work to do.
2. Decodes each one in a fresh child process, twice: `model` is the decode stage's work
   (`decode_for_model`: the model input and the source's geometry), `full` is the full-resolution decode
   the write stage makes before it cuts the crops (`decode_full`). Each child reports its peak resident
   memory, read after the decode (`peak_rss_mb`: the kernel's high-water mark of the child's own
   address space, `VmHWM`; `getrusage`'s `ru_maxrss` is not used because Linux carries it across
   `execve`, so a child would report the parent's peak if that was higher).
3. Prints each peak minus the peak of a baseline child that imports the decode module and reads the
   same file's bytes but decodes nothing, so the figure is the decode's own working memory, beside the
   bound `core/decode.py` states for that image (`ImageHeader.decode_bytes`, from the header).
   MB are 10^6 bytes.

Research command: it imports the library and ships to no worker. Figures vary by a few MB between runs
(allocator and page-cache effects); compare runs of the same size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parents[1]

# The images the benchmark draws: name -> (bits per sample, channels).
KINDS = {"8-bit RGB": (8, 3), "8-bit RGBA": (8, 4), "16-bit RGB": (16, 3), "16-bit RGBA": (16, 4)}

# What a child does with the file: "baseline" only reads its bytes (after importing the decode module).
STAGES = ("baseline", "model", "full")


def image_size(megapixels: float) -> tuple[int, int]:
    """(width, height) of a 4:3 image of about `megapixels`."""
    width = max(4, round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    return width, max(3, round(width * 3 / 4))


def draw(width: int, height: int, bits: int, channels: int) -> np.ndarray:
    """A BGR(A) image of smooth gradients (OpenCV's channel order), `bits` per sample; the alpha channel,
    if any, ramps from transparent (left) to opaque (right)."""
    top = 65535 if bits == 16 else 255
    dtype = np.uint16 if bits == 16 else np.uint8
    rows = np.linspace(0, top, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, top, width, dtype=np.float32)[None, :]
    image = np.empty((height, width, channels), dtype)
    image[:, :, 0] = (rows * 0.5 + cols * 0.5).astype(dtype)
    image[:, :, 1] = (top - rows).astype(dtype)
    image[:, :, 2] = np.broadcast_to(cols, (height, width)).astype(dtype)
    if channels == 4:
        image[:, :, 3] = np.broadcast_to(cols, (height, width)).astype(dtype)
    return image


def write_pngs(directory: Path, megapixels: float) -> dict[str, Path]:
    """The four benchmark PNGs of `megapixels` in `directory` (existing ones are reused)."""
    import cv2

    directory.mkdir(parents=True, exist_ok=True)
    width, height = image_size(megapixels)
    paths = {}
    for name, (bits, channels) in KINDS.items():
        path = directory / f"{width}x{height}_{bits}bit_{'rgba' if channels == 4 else 'rgb'}.png"
        if not path.exists():
            if not cv2.imwrite(str(path), draw(width, height, bits, channels), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise OSError(f"OpenCV could not write {path}")
        paths[name] = path
    return paths


def _model_input_size(height: int, width: int) -> tuple[int, int]:
    """The default model's input geometry (short side 224, long side a multiple of 16), computed here so
    that the child does not import TensorFlow (`gazecrop.model.loading.input_size` does)."""
    short, long = sorted((height, width))
    long_out = max(224, round(long * 224 / short / 16) * 16)
    return (224, long_out) if height <= width else (long_out, 224)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (`VmHWM` of /proc/self/status: since its last exec)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024 / 1e6


def child(stage: str, path: str) -> dict:
    """Run one stage on the file at `path` in this process; return its peak RSS (MB) and time (s)."""
    from gazecrop.decode import decode_for_model, decode_full

    data = Path(path).read_bytes()
    start = time.perf_counter()
    if stage == "model":
        decode_for_model(data, input_size=_model_input_size)
    elif stage == "full":
        decode_full(data)
    seconds = time.perf_counter() - start
    return {"peak_mb": peak_rss_mb(), "seconds": seconds}


def stated_bound_mb(path: Path) -> float | None:
    """The decode's memory bound for this file as `core/decode.py` states it, in MB (None for a
    version of the module that states none). Read in this process: Pillow's header read of a PNG
    decodes the whole image to look for EXIF, which would inflate a baseline child."""
    from gazecrop.decode import read_header

    bound = getattr(read_header(path.read_bytes()), "decode_bytes", None)
    return None if bound is None else bound / 1e6


def measure(stage: str, path: Path) -> dict:
    """`child(stage, path)` in a fresh Python process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH")) if p),
               OPENCV_LOG_LEVEL="OFF")
    done = subprocess.run([sys.executable, "-m", "gazecrop.tools.decodebench", "--child", stage, str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {stage} child failed on {path} (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_bench(megapixels: float, workdir: Path | None = None) -> list[dict]:
    """Measure every kind of image and stage; print and return one row per kind of image."""
    with tempfile.TemporaryDirectory(prefix="gazecrop-decodebench-") as scratch:
        paths = write_pngs(workdir or Path(scratch), megapixels)
        width, height = image_size(megapixels)
        print(f"decode peak memory, PNGs of {width}x{height} = {width * height / 1e6:.1f} MP; each figure is a fresh "
              f"child's peak RSS minus that of a child that only imports and reads the file")
        print(f"{'image':<12} {'file MB':>8} {'baseline MB':>12} {'model input MB':>15} {'full decode MB':>15} "
              f"{'bound MB':>9} {'model s':>8} {'full s':>7}")
        rows = []
        for name, path in paths.items():
            base = measure("baseline", path)
            model = measure("model", path)
            full = measure("full", path)
            row = {"image": name, "file_mb": path.stat().st_size / 1e6, "baseline_mb": base["peak_mb"],
                   "model_mb": model["peak_mb"] - base["peak_mb"], "full_mb": full["peak_mb"] - base["peak_mb"],
                   "bound_mb": stated_bound_mb(path), "model_s": model["seconds"], "full_s": full["seconds"]}
            rows.append(row)
            bound = "-" if row["bound_mb"] is None else f"{row['bound_mb']:.0f}"
            print(f"{name:<12} {row['file_mb']:>8.1f} {row['baseline_mb']:>12.0f} {row['model_mb']:>15.0f} "
                  f"{row['full_mb']:>15.0f} {bound:>9} {row['model_s']:>8.2f} {row['full_s']:>7.2f}", flush=True)
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gazecrop.tools.decodebench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=48.0,
                        help="size of the test images, in megapixels (4:3); default 48")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the PNGs in this folder (and reuse them) instead of a temporary one")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        stage, path = args.child
        if stage not in STAGES:
            parser.error(f"--child STAGE must be one of {', '.join(STAGES)}. Received: {stage}")
        print(json.dumps(child(stage, path)))
        return 0
    if not (math.isfinite(args.megapixels) and 0.01 <= args.megapixels <= 200):
        parser.error(f"--megapixels must be between 0.01 and 200. Received: {args.megapixels}")
    run_bench(args.megapixels, args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
