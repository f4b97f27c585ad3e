"""`python -m gazecrop.tools.bench`: the pipeline's throughput against the model's alone.

    python -m gazecrop.tools.bench --images 200 [--model default] [--batch_size 16] [--size 1600x1200]

1. Draws N synthetic photos (pipeline/demo.py scenes, JPEG, a few aspect ratios) into a work folder.
2. Runs the whole pipeline on them (FnApiRunner, in this process) and reports images/s end to end, the
   time each stage spent (Beam metrics of each stage's DoFn) and this process's peak RSS.
3. Runs the model alone on the same inputs and batch size (inputs decoded beforehand, batch by batch,
   not timed), once before and once after the pipeline, and reports its images/s and the ratio
   end-to-end / model-only; and the CPU time per image of both (on a machine shared with other jobs the
   wall-clock ratio drifts with their load; the CPU-time ratio does not).
4. Times the model input of a 12-megapixel JPEG: reduced-resolution decode vs full decode plus resize.

Peak RSS is the process's high-water mark, so compare runs of different N as separate commands.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import apache_beam as beam
import cv2
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from gazecrop.pipeline.demo import draw_scene
from gazecrop.pipeline.options import parse
from gazecrop.pipeline.run import build, summarize
from gazecrop.decode import decode_for_model, resize_to
from gazecrop.transforms.inference import describe_model, load_cached
from gazecrop.records import DecodedImage, group_by_shape_of

# Sizes of the synthetic photos (width, height): the common camera and phone shapes, both orientations.
_SHAPES = ((4, 3), (3, 4), (3, 2), (16, 9), (1, 1))
_STAGES = ("read", "decode", "crop", "write")


def make_inputs(directory: str, count: int, long_side: int) -> list[str]:
    """Write `count` synthetic JPEG photos (reused if already there)."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(count):
        w, h = _SHAPES[i % len(_SHAPES)]
        scale = long_side / max(w, h)
        path = os.path.join(directory, f"photo{i:05d}.jpg")
        if not os.path.exists(path):
            rgb = draw_scene(round(w * scale), round(h * scale), seed=1000 + i)
            cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def peak_rss_mb() -> float:
    """This process's peak resident set size (plus waited-for children), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def run_pipeline(input_list: str, output: str, model: str, batch_size: int, beam_args: list[str]):
    """The whole pipeline; returns (seconds to build, seconds to run, CPU seconds of this process while
    running, summary, per-stage seconds).

    Building loads the model (once per process, reused by the in-process workers), like the model-only
    run, which times `predict` alone; running is everything else, start-up and Parquet included.
    """
    options, beam_args = parse(["--input_list", input_list, "--output", output,
                                "--model", model, "--batch_size", str(batch_size), *beam_args])
    start = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(beam_args))
    build(p, options)
    built = time.perf_counter()
    cpu = time.process_time()
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - built
    cpu_seconds = time.process_time() - cpu
    stages = {}
    for name in _STAGES:
        found = result.metrics().query(MetricsFilter().with_namespace("gazecrop").with_name(f"{name}_us"))
        stages[name] = sum(d.committed.sum for d in found["distributions"]) / 1e6
    found = result.metrics().query(MetricsFilter().with_name("inference_batch_latency_micro_secs"))
    stages["inference"] = sum(d.committed.sum for d in found["distributions"]) / 1e6
    return built - start, seconds, cpu_seconds, summarize(output), stages


def run_model_only(paths: list[str], model_spec: str, batch_size: int) -> tuple[float, float, int]:
    """Wall and CPU seconds of `gazecrop.model.predict` alone over the same inputs, batches of `batch_size` split
    by shape (the same model object the pipeline used); and the number of images."""
    model = load_cached(model_spec)
    with open(paths[0], "rb") as f:  # warm-up call (function tracing), not timed
        model.predict(decode_for_model(f.read(), input_size=model.input_size).pixels[None].astype(np.float32))
    predicted = 0
    seconds = cpu_seconds = 0.0
    for first in range(0, len(paths), batch_size):
        images = []
        for path in paths[first:first + batch_size]:
            with open(path, "rb") as f:
                pixels = decode_for_model(f.read(), input_size=model.input_size).pixels
            images.append(DecodedImage(path, "", b"", "", 0, 0, pixels))
        for indices in group_by_shape_of([im.pixels for im in images]).values():
            batch = np.stack([images[i].pixels for i in indices]).astype(np.float32)
            start, cpu = time.perf_counter(), time.process_time()
            model.predict(batch)
            seconds += time.perf_counter() - start
            cpu_seconds += time.process_time() - cpu
            predicted += len(indices)
    return seconds, cpu_seconds, predicted


def time_12mp_decode(directory: str, repeats: int = 5) -> tuple[float, float, tuple[int, int]]:
    """Best-of-`repeats` seconds: reduced decode for the model vs full decode + area resize (4000x3000)."""
    path = os.path.join(directory, "twelve-megapixels.jpg")
    if not os.path.exists(path):
        rgb = draw_scene(4000, 3000, seed=12)
        cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    with open(path, "rb") as f:
        data = f.read()
    info = describe_model("tiny")  # only the input geometry (short side 224) is used
    target_h, target_w = info.input_size(3000, 4000)
    reduced, full = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        decode_for_model(data, input_size=info.input_size)
        reduced.append(time.perf_counter() - start)
        start = time.perf_counter()
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        resize_to(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB), (target_w, target_h))
        full.append(time.perf_counter() - start)
    return min(reduced), min(full), (target_w, target_h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gazecrop.tools.bench", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--images", type=int, default=200, help="number of images (default: %(default)s)")
    parser.add_argument("--model", default="default", help="model to run (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=16, help="model batch size (default: %(default)s)")
    parser.add_argument("--long_side", type=int, default=1600,
                        help="long side of the synthetic photos in pixels (default: %(default)s)")
    parser.add_argument("--workdir", default=None,
                        help="folder for inputs and outputs (default: a temporary folder, removed)")
    parser.add_argument("--skip_model_only", action="store_true",
                        help="skip the model-only run (for memory runs at large N)")
    known, beam_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)

    with tempfile.TemporaryDirectory(prefix="gazecrop-bench-") as scratch:
        workdir = known.workdir or scratch
        input_dir = os.path.join(workdir, f"inputs-{known.long_side}")
        paths = make_inputs(input_dir, known.images, known.long_side)
        input_list = os.path.join(workdir, f"inputs-{known.long_side}-{known.images}.txt")
        with open(input_list, "w") as f:
            f.write("\n".join(paths) + "\n")
        output = os.path.join(workdir, f"out-{known.images}")
        shutil.rmtree(output, ignore_errors=True)
        print(f"gazecrop.tools.bench: {known.images} synthetic JPEGs (long side {known.long_side} px), "
              f"model {known.model!r}, batch size {known.batch_size}, {os.cpu_count()} CPUs")
        if not known.skip_model_only:  # model alone before and after the pipeline: fairer under drifting load
            before = run_model_only(paths, known.model, known.batch_size)
        build_seconds, seconds, cpu_seconds, summary, stages = run_pipeline(
            input_list, output, known.model, known.batch_size, beam_args)
        rss = peak_rss_mb()
        end_to_end = summary.cropped / seconds
        print(f"graph build: {build_seconds:.1f} s (loads the model once per process; the model-only "
              f"run before it already did)" if not known.skip_model_only else
              f"graph build: {build_seconds:.1f} s (loads the model once per process)")
        print(f"end to end:  {summary.cropped} images in {seconds:.1f} s = {end_to_end:.2f} images/s "
              f"(failed {sum(summary.failed.values())}; with the graph build: "
              f"{summary.cropped / (seconds + build_seconds):.2f} images/s)")
        print(f"peak RSS:    {rss:.0f} MB")
        print("time per stage (sum over elements; ms per image):")
        for name, total in stages.items():
            print(f"  {name:<10} {total:8.1f} s  {1000 * total / max(1, summary.cropped):8.1f} ms/image")
        if not known.skip_model_only:
            after = run_model_only(paths, known.model, known.batch_size)
            predicted = before[2]
            model_seconds = (before[0] + after[0]) / 2
            model_cpu = (before[1] + after[1]) / 2
            model_only = predicted / model_seconds
            print(f"model only:  {predicted} images in {model_seconds:.1f} s = {model_only:.2f} images/s "
                  f"(mean of a run before and one after the pipeline: {before[0]:.1f} s, {after[0]:.1f} s)")
            print(f"ratio:       end to end / model only = {end_to_end / model_only:.1%} (wall clock)")
            print(f"CPU time:    pipeline {1000 * cpu_seconds / summary.cropped:.0f} ms/image, model alone "
                  f"{1000 * model_cpu / predicted:.0f} ms/image: the model is {model_cpu / cpu_seconds:.1%} "
                  f"of the pipeline's CPU work")
        reduced, full, target = time_12mp_decode(workdir)
        print(f"12-MP JPEG to a {target[0]}x{target[1]} model input: reduced decode {1000 * reduced:.1f} ms, "
              f"full decode + resize {1000 * full:.1f} ms ({reduced / full:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
