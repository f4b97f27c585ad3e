"""`python -m gazecrop.tools.loadtest`: a whole catalog through `gazecrop run` on worker processes, with every
input accounted for and the memory of every process sampled while it runs.

    python -m gazecrop.tools.loadtest --images 20000 --long_side 256             # load: many small images
    python -m gazecrop.tools.loadtest --images 48 --long_side 6000 --broken 0     # memory: many large images

1. Draws N synthetic photos (pipeline/demo.py scenes, JPEG; every `--broken`-th one is cut short, so
   failures are part of the load) into a work folder (kept between runs with --workdir).
2. Runs `gazecrop run` on them in this process: DirectRunner (FnApiRunner) with
   `--direct_running_mode=multi_processing` and `--workers` SDK worker processes, the tiny model by
   default (this measures the pipeline around the model; pass `--model default` for the real one).
3. Samples the resident memory of this process and of each of its worker processes every half second,
   together with how many images were accounted for (the progress ticks of `gazecrop.pipeline.progress`), and
   prints it at each tenth of the run: memory that stays flat while the count grows is the point.
4. Reads the tables back: every input is cropped or has its one error row, none twice.

The memory bound it checks (per worker process): the worker's memory once the model is loaded, plus what
the images in flight can hold at once. A worker holds at most `--batch_size` decoded model inputs and
the compressed bytes of the bundle it works on, and decodes one full-resolution source at a time per
thread in the write stage (width × height × 3 bytes, plus the crop being encoded; a source of at most
12 MP has up to min(4, cores) crops encoded at once): so with images of at most P megapixels (P > 12),
peak ≈ baseline + 2 × P × 3 MB, whatever the number of images.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import threading
import time

from gazecrop.tools.bench import make_inputs
from gazecrop.pipeline.options import parse
from gazecrop.pipeline.progress import ProgressBar

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE_MB


def descendants(root: int) -> list[int]:
    """`root` and every process below it (from /proc's parent links)."""
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children[parent].append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class MemorySampler:
    """Samples the RSS of a process tree and a progress count every `interval` seconds, in a thread."""

    def __init__(self, root: int, progress: ProgressBar, interval: float = 0.5):
        self._root = root
        self._progress = progress
        self._interval = interval
        self.samples: list[tuple[float, int, dict[int, float]]] = []  # (seconds, images done, {pid: MB})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._start = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            rss = {}
            for pid in descendants(self._root):
                try:
                    rss[pid] = rss_mb(pid)
                except OSError:
                    pass
            self.samples.append((time.monotonic() - self._start, self._progress.done(), rss))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def break_some(paths: list[str], every: int) -> int:
    """Cut every `every`-th file to a third of its bytes (a truncated upload); returns how many."""
    if not every:
        return 0
    broken = 0
    for path in paths[every - 1::every]:
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 3])
        broken += 1
    return broken


def run_pipeline(input_dir: str, output: str, known, progress: ProgressBar) -> str:
    """`gazecrop run` in this process (its SDK workers are child processes); returns the summary."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from gazecrop.pipeline.run import build, summarize
    options, beam_args = parse([
        "--input", f"{input_dir}/*", "--output", output, "--model", known.model,
        "--batch_size", str(known.batch_size), "--aspect_ratios", "1:1,16:9",
        "--direct_running_mode=multi_processing", f"--direct_num_workers={known.workers}"])
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        build(p, options, progress_path=progress.path)
    return "\n".join(summarize(output).lines(output))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gazecrop.tools.loadtest", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--long_side", type=int, default=256, help="long side of the photos in pixels")
    parser.add_argument("--broken", type=int, default=100, help="truncate every N-th input (0: none)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="SDK worker processes")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--workdir", default=None, help="keep inputs here between runs (default: temporary)")
    known = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gazecrop-load-") as scratch:
        workdir = known.workdir or scratch
        input_dir = os.path.join(workdir, f"load-{known.long_side}-{known.images}-{known.broken}")
        start = time.perf_counter()
        fresh = not os.path.isdir(input_dir)
        paths = make_inputs(input_dir, known.images, known.long_side)
        if fresh:
            break_some(paths, known.broken)
        broken = len(paths[known.broken - 1::known.broken]) if known.broken else 0
        print(f"loadtest: {len(paths)} JPEGs, long side {known.long_side} px, {broken} truncated "
              f"({time.perf_counter() - start:.0f} s to prepare); model {known.model!r}, "
              f"{known.workers} worker processes, batch size {known.batch_size}")
        output = os.path.join(workdir, f"out-{known.long_side}-{known.images}")
        shutil.rmtree(output, ignore_errors=True)
        with ProgressBar(len(paths), stream=sys.stdout, log_every=60) as progress:
            with MemorySampler(os.getpid(), progress) as sampler:
                start = time.perf_counter()
                summary = run_pipeline(input_dir, output, known, progress)
                seconds = time.perf_counter() - start
        print(summary)
        report(sampler.samples, os.getpid(), len(paths), seconds)
        return check_tables(output, paths)


def report(samples, launcher: int, total: int, seconds: float) -> None:
    print(f"throughput: {total} images in {seconds:.0f} s = {total / seconds:.1f} images/s "
          f"(graph build, model load and worker start-up included)")
    print("memory while it ran (RSS, MB): launcher | each worker process, at each tenth of the images")
    shown = set()
    for at, done, rss in samples:
        tenth = min(10, done * 10 // max(total, 1))
        if tenth in shown or not rss:
            continue
        shown.add(tenth)
        workers = sorted((mb for pid, mb in rss.items() if pid != launcher and mb > 50), reverse=True)
        print(f"  {done:6d} done ({at:5.0f} s): {rss.get(launcher, 0):6.0f} | "
              + " ".join(f"{mb:6.0f}" for mb in workers))
    peaks = collections.defaultdict(float)
    for _, _, rss in samples:
        for pid, mb in rss.items():
            peaks[pid] = max(peaks[pid], mb)
    workers = sorted((mb for pid, mb in peaks.items() if pid != launcher and mb > 50), reverse=True)
    print(f"peak RSS: launcher {peaks.get(launcher, 0):.0f} MB; workers "
          + ", ".join(f"{mb:.0f}" for mb in workers) + " MB")


def check_tables(output: str, paths: list[str]) -> int:
    from gazecrop.transforms.metadata import read_table
    metadata = read_table(output, "metadata", ["source_uri", "aspect_ratio"]).to_pylist()
    errors = read_table(output, "errors", ["source_uri"]).column("source_uri").to_pylist()
    cropped = {r["source_uri"] for r in metadata}
    duplicates = len(metadata) - len({(r["source_uri"], r["aspect_ratio"]) for r in metadata})
    accounted = cropped | set(errors)
    ok = accounted == set(paths) and not cropped & set(errors) and not duplicates and len(errors) == len(set(errors))
    print(f"accounted: {len(cropped)} cropped + {len(errors)} failed = {len(accounted)} of {len(paths)} inputs, "
          f"{duplicates} duplicate rows: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
