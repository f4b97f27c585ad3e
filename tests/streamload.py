"""The streaming load run with a restart (issue 7): every image recorded exactly once.

    python tests/streamload.py --images 2000            # the benchmark (outside CI; figures in docs/benchmarks.md)

1. Starts a GCS API server and the Pub/Sub emulator on loopback (tests/servers.py), unless the
   environment already points at them (the test fixtures do).
2. Starts `gazecrop run --streaming` on a new subscription with `--input_prefix gs://BUCKET/in-<id>/`
   (Beam's streaming DirectRunner, in a child process), then uploads N synthetic JPEGs there (every
   `--broken`-th cut short), publishing each object's OBJECT_FINALIZE notification, made from the
   object's own metadata as GCS does, right after its upload.
3. Kills the job with SIGKILL once `--kill_at` of the images have crops and a first window of rows is
   in the tables, while uploads go on: messages it had acknowledged but not recorded are lost to the
   subscription. Starts it again: it lists the prefix at start (--catch_up), skips what the tables record, takes the rest from
   the listing or the subscription (each once), and is stopped with SIGINT (Ctrl-C: it drains and
   prints its summary) when the tables account for every image.
4. Reads every table file: each image has one row per ratio or one error row, and nothing twice.

Prints the throughput of each run (images/s from start to the last image recorded, start-up
included), each run's peak RSS (the job process and its children), and the accounting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from gazecrop.tools.bench import make_inputs  # noqa: E402
from gazecrop.tools.loadtest import descendants, rss_mb, break_some  # noqa: E402

PROJECT = "gazecrop-load"
RATIOS = ("1:1", "16:9")


def notification(bucket: str, name: str, resource: dict, event: str = "OBJECT_FINALIZE") -> tuple[bytes, dict]:
    """A GCS notification (JSON_API_V1 payload): the object resource and the attributes GCS sets."""
    attributes = {"bucketId": bucket, "objectId": name, "eventType": event, "payloadFormat": "JSON_API_V1",
                  "objectGeneration": str(resource.get("generation", "1")),
                  "eventTime": resource.get("updated", "1970-01-01T00:00:00Z"),
                  "notificationConfig": f"projects/_/buckets/{bucket}/notificationConfigs/1"}
    return json.dumps(resource).encode(), attributes


def object_notification(uri: str) -> tuple[bytes, dict]:
    """The OBJECT_FINALIZE notification GCS sends for the object `gs://bucket/name` as it is now."""
    from google.cloud import storage
    bucket_name, name = uri.removeprefix("gs://").split("/", 1)
    blob = storage.Client(project=PROJECT).bucket(bucket_name).get_blob(name)
    return notification(bucket_name, name, blob._properties)  # the object resource, as the JSON API has it


class Uploads(threading.Thread):
    """Uploads each file to `<bucket>/<prefix><name>` and publishes its notification right after, as a
    bucket with notifications does, while the job runs; `uris` are the objects uploaded so far."""

    def __init__(self, bucket_uri: str, prefix: str, paths: list[str], publisher, topic: str):
        super().__init__(daemon=True)
        self._bucket_uri, self._prefix, self._paths = bucket_uri, prefix, paths
        self._publisher, self._topic = publisher, topic
        self.uris: list[str] = []
        self.failure: BaseException | None = None

    def run(self):
        from google.cloud import storage
        bucket = storage.Client(project=PROJECT).bucket(self._bucket_uri.removeprefix("gs://"))
        try:
            for path in self._paths:
                blob = bucket.blob(f"{self._prefix}{os.path.basename(path)}")
                blob.upload_from_filename(path, content_type="image/jpeg")
                data, attributes = object_notification(f"{self._bucket_uri}/{blob.name}")
                self._publisher.publish(self._topic, data, **attributes)
                self.uris.append(f"{self._bucket_uri}/{blob.name}")
        except BaseException as e:  # noqa: BLE001 (reported by the main thread)
            self.failure = e


def table_rows(root: Path) -> tuple[list[dict], list[dict]]:
    """Every row of every file of both tables (batch file and window files)."""
    import pyarrow.parquet as pq
    tables = []
    for name in ("metadata", "errors"):
        files = sorted((root / name).glob("*.parquet")) if (root / name).is_dir() else []
        tables.append([r for f in files for r in pq.read_table(f, columns=["source_uri"] + (
            ["aspect_ratio"] if name == "metadata" else ["stage"])).to_pylist()])
    return tables[0], tables[1]


def accounted(root: Path) -> int:
    metadata, errors = table_rows(root)
    return len({r["source_uri"] for r in metadata} | {r["source_uri"] for r in errors})


def crops_written(root: Path) -> int:
    folder = root / "crops" / RATIOS[0].replace(":", "x")
    return sum(1 for p in folder.iterdir() if p.suffix == ".jpg") if folder.is_dir() else 0


class Job:
    """`gazecrop run --streaming` in a child process, its peak RSS (with its children) sampled."""

    def __init__(self, argv: list[str], log: Path):
        self._log = open(log, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "gazecrop.pipeline.run", *argv], cwd=REPO,
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})  # a killed job's last lines
        self.started = time.monotonic()
        self.peak_mb = 0.0

    def sample(self) -> None:
        total = 0.0
        for pid in descendants(self.process.pid):
            with contextlib.suppress(OSError):
                total += rss_mb(pid)
        self.peak_mb = max(self.peak_mb, total)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int, timeout: float = 180) -> int:
        if self.alive():
            os.killpg(self.process.pid, sig) if sig == signal.SIGKILL else self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.alive():
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self._log.close()


def wait_until(condition, job: Job, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        job.sample()
        if not job.alive():
            raise RuntimeError(f"the streaming job exited before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.5)


def run(known, workdir: Path, bucket: str) -> int:
    from google.cloud import pubsub_v1
    inputs = workdir / f"inputs-{known.long_side}-{known.images}-{known.broken}"
    fresh = not inputs.is_dir()
    paths = make_inputs(str(inputs), known.images, known.long_side)
    if fresh:
        break_some(paths, known.broken)
    prefix = f"in-{uuid.uuid4().hex[:8]}/"  # this run's own folder: the bucket may hold others
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, f"uploads-{os.getpid()}")
    subscription = subscriber.subscription_path(PROJECT, f"gazecrop-{os.getpid()}")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60)
    # The DirectRunner's Pub/Sub reader advances the watermark (closing windows) only when a pull
    # returns, and a pull on an idle subscription waits up to 30 s: a live bucket's trickle of other
    # events (ignored: not OBJECT_FINALIZE) is played every half second.
    stop_trickle = threading.Event()
    trickle_data, trickle_attributes = notification(bucket.removeprefix("gs://"), f"{prefix}deleted.jpg", {
        "bucket": bucket.removeprefix("gs://"), "name": f"{prefix}deleted.jpg"}, event="OBJECT_DELETE")

    def trickle():
        while not stop_trickle.wait(0.5):
            publisher.publish(topic, trickle_data, **trickle_attributes)

    threading.Thread(target=trickle, daemon=True).start()
    root = workdir / f"out-{known.images}"
    argv = ["--streaming", "--input_subscription", subscription, "--input_prefix", f"{bucket}/{prefix}",
            "--output", str(root), "--model", known.model, "--aspect_ratios", ",".join(RATIOS),
            "--batch_size", str(known.batch_size), "--window_seconds", str(known.window_seconds),
            "--max_batch_duration_secs", "1", "--progress", "off"]
    print(f"streamload: {len(paths)} JPEGs (long side {known.long_side} px, every {known.broken}th cut short), "
          f"uploaded and notified while the job runs; model {known.model!r}")
    jobs: list[Job] = []
    try:
        first = Job(argv, workdir / "run1.log")
        jobs.append(first)
        uploads = Uploads(bucket, prefix, paths, publisher, topic)
        uploads.start()
        kill_at = max(1, int(known.images * known.kill_at))
        # Killed with rows in the tables (a window was written) and images in flight: run 2 must skip
        # the first kind and redo the second; uploads go on meanwhile.
        wait_until(lambda: crops_written(root) >= kill_at and accounted(root) > 0, first, known.timeout,
                   f"{kill_at} images cropped and a window written")
        first.stop(signal.SIGKILL)
        killed_after = time.monotonic() - first.started
        recorded_then, cropped_then = accounted(root), crops_written(root)
        print(f"run 1: killed (SIGKILL) after {killed_after:.0f} s, {len(uploads.uris)} images uploaded, "
              f"{cropped_then} with crops, {recorded_then} recorded in the tables; peak RSS {first.peak_mb:.0f} MB")

        second = Job(argv, workdir / "run2.log")
        jobs.append(second)
        wait_until(lambda: not uploads.is_alive() and accounted(root) >= len(uploads.uris), second, known.timeout,
                   "image accounted for")
        done_after = time.monotonic() - second.started
        code = second.stop(signal.SIGINT)
        print(f"run 2: every image recorded {done_after:.0f} s after start "
              f"({len(paths) - recorded_then} images not recorded by run 1: "
              f"{(len(paths) - recorded_then) / done_after:.1f} images/s, start-up and catch-up listing "
              f"included); exit {code}; peak RSS {second.peak_mb:.0f} MB")
        log = (workdir / "run2.log").read_text().splitlines()
        summary = [i for i, line in enumerate(log) if line.startswith("gazecrop (streaming)")]
        for line in log[summary[-1]:summary[-1] + 3] if summary else ["(no summary: see run2.log)"]:
            print("  | " + line)
    finally:
        stop_trickle.set()
        for job in jobs:  # stopped early (an error, Ctrl-C, SIGTERM): no job outlives this command
            if job.alive():
                job.stop(signal.SIGKILL)
        with contextlib.suppress(Exception):
            subscriber.delete_subscription(subscription=subscription)
            publisher.delete_topic(topic=topic)
    if uploads.failure:
        raise uploads.failure
    return check(root, set(uploads.uris), len(paths[known.broken - 1::known.broken]) if known.broken else 0)


def check(root: Path, uris: set[str], broken: int) -> int:
    metadata, errors = table_rows(root)
    keys = [(r["source_uri"], r["aspect_ratio"]) for r in metadata]
    cropped, failed = {r["source_uri"] for r in metadata}, [r["source_uri"] for r in errors]
    duplicates = len(keys) - len(set(keys)) + len(failed) - len(set(failed))
    ok = (cropped | set(failed) == uris and not cropped & set(failed) and not duplicates
          and len(keys) == len(cropped) * len(RATIOS) and len(set(failed)) == broken)
    print(f"accounted: {len(cropped)} cropped + {len(set(failed))} failed = {len(cropped | set(failed))} of "
          f"{len(uris)} images, {duplicates} duplicate rows: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/streamload.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--long_side", type=int, default=256)
    parser.add_argument("--broken", type=int, default=100, help="cut every N-th input short (0: none)")
    parser.add_argument("--kill_at", type=float, default=0.5, help="kill run 1 once this share has crops")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--window_seconds", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds each run may take")
    parser.add_argument("--workdir", default=None, help="keep inputs here between runs (default: temporary)")
    parser.add_argument("--bucket", default=None,
                        help="gs://BUCKET on the GCS server STORAGE_EMULATOR_HOST names (default: start one)")
    known = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SIGTERM unwinds: servers, jobs stop
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started in the background by a shell (`cmd &`), this process and so its jobs ignore SIGINT, and
        # run 2's Ctrl-C stop would never arrive. A handled signal is reset for the child, an ignored one is
        # inherited.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _main(known)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(known) -> int:
    with tempfile.TemporaryDirectory(prefix="gazecrop-streamload-") as scratch:
        workdir = Path(known.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as servers:  # what this starts, it stops
            bucket = known.bucket
            if not bucket:
                from servers import gcs_emulator
                bucket = servers.enter_context(gcs_emulator(workdir / "gcloud")).bucket
            if not os.environ.get("PUBSUB_EMULATOR_HOST"):
                from servers import pubsub_emulator
                (workdir / "pubsub").mkdir(exist_ok=True)
                servers.enter_context(pubsub_emulator(workdir / "pubsub"))
            return run(known, workdir, bucket)


if __name__ == "__main__":
    sys.exit(main())
