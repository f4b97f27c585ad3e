"""`gazecrop run --streaming`: GCS notifications from a real Pub/Sub emulator, images on a real GCS API
server (both on loopback: tests/servers.py), the job on Beam's streaming DirectRunner; the notification
parser and the model swap of the ModelHandler without a streaming runner."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import threading
import time

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import crop_name
from streamload import main as streamload, notification, object_notification
from gazecrop.paths import output_relpath
from gazecrop.transforms.stream import MalformedNotificationError, notification_to_file, parse_notification

PROJECT = "gazecrop-test"


def _finalize(bucket: str, name: str, size: int, event: str = "OBJECT_FINALIZE") -> tuple[bytes, dict]:
    """A notification as GCS sends it (`--payload-format=json`) for an object of `size` bytes."""
    return notification(bucket, name, {
        "kind": "storage#object", "bucket": bucket, "name": name, "size": str(size), "contentType": "image/png",
        "updated": "2026-11-27T17:30:00.123Z", "generation": "1700000000000001"}, event)


# ----------------------------------------------------------------------------------------------
# Notifications, without Beam
# ----------------------------------------------------------------------------------------------

def test_notification_becomes_a_named_matched_file():
    data, attributes = _finalize("b", "in/kodak/kodim01.png", 1234)
    matched = notification_to_file(parse_notification(data, attributes), input_prefix="gs://b/in/",
                                   output_root="gs://b/out")
    assert matched.uri == "gs://b/in/kodak/kodim01.png"
    assert matched.relpath == output_relpath("gs://b/in/kodak/kodim01.png", "kodak/kodim01.png")
    assert matched.size_in_bytes == 1234
    expected = datetime.datetime(2026, 11, 27, 17, 30, 0, 123000, tzinfo=datetime.timezone.utc)
    assert matched.modified_us == round(expected.timestamp() * 1_000_000)


def test_notifications_ignored_or_refused():
    data, attributes = _finalize("b", "in/a.png", 1, event="OBJECT_DELETE")
    assert notification_to_file(parse_notification(data, attributes), input_prefix=None, output_root="/o") is None
    data, attributes = _finalize("b", "out/crops/1x1/a.png.jpg", 1)  # the job's own output
    assert notification_to_file(parse_notification(data, attributes), input_prefix=None,
                                output_root="gs://b/out") is None
    data, attributes = _finalize("b", "elsewhere/a.png", 1)
    assert notification_to_file(parse_notification(data, attributes), input_prefix="gs://b/in/",
                                output_root="gs://b/out") is None
    # No prefix: named <bucket>/<object>, made safe (no "..", no escape from ROOT).
    data, attributes = _finalize("b", "x/../../etc/passwd", 1)
    matched = notification_to_file(parse_notification(data, attributes), input_prefix=None, output_root="/o")
    assert matched.relpath.startswith("b/x/%2E%2E/%2E%2E/etc/passwd%=")
    for data, attributes in [(b"{not json", {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "a"}),
                             (b"{}", {"bucketId": "b", "objectId": "a"}),
                             (b'{"bucket": "b", "name": "a", "size": "many"}', {"eventType": "OBJECT_FINALIZE"}),
                             (b'{"bucket": "c", "name": "a"}', {"eventType": "OBJECT_FINALIZE", "bucketId": "b",
                                                                 "objectId": "a"}),
                             (b"[]", {"eventType": "OBJECT_FINALIZE"})]:
        with pytest.raises(MalformedNotificationError):
            parse_notification(data, attributes)


def test_local_runner_refuses_what_it_cannot_stream(tmp_path):
    """File drops (MatchContinuously) and the model side input cannot run on Beam 2.77's Python
    DirectRunner in streaming mode: the job is refused with the reason instead of hanging."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from gazecrop.pipeline.options import parse
    from gazecrop.pipeline.stream import UnsupportedOnRunnerError, check_runner
    options, beam_args = parse(["--streaming", "--input", f"{tmp_path}/*.png", "--model", "tiny"])
    assert beam_args == ["--runner=BundleBasedDirectRunner", "--streaming"]
    with pytest.raises(UnsupportedOnRunnerError, match="MatchContinuously"):
        check_runner(options, PipelineOptions(beam_args))
    options, beam_args = parse(["--streaming", "--input_subscription", "projects/p/subscriptions/s",
                                "--watch_model_pattern", f"{tmp_path}/*.weights.h5"])
    check_runner(options, PipelineOptions(beam_args))  # the handler watches: fine on every runner


def test_streaming_options_need_streaming():
    from gazecrop.pipeline.options import parse
    with pytest.raises(SystemExit):
        parse(["--input", "a/*", "--window_seconds", "5"])
    with pytest.raises(SystemExit):
        parse(["--streaming", "--input", "a/*", "--input_subscription", "projects/p/subscriptions/s"])
    with pytest.raises(SystemExit):
        parse(["--streaming", "--input_subscription", "my-subscription"])


# ----------------------------------------------------------------------------------------------
# The streaming job: notifications in, crops and windowed tables out
# ----------------------------------------------------------------------------------------------

def _read_stream_table(root, name: str) -> tuple[list[str], list[dict]]:
    files = sorted(p for p in (root / name).glob("*.parquet"))
    rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    return [f.name for f in files], rows


@pytest.mark.gcs
@pytest.mark.pubsub
def test_streaming_gcs_notifications(gcs_server, pubsub_server, fixtures_dir, tmp_path, tiny_info):
    from apache_beam.io.filesystems import FileSystems
    from google.cloud import pubsub_v1

    from gazecrop.pipeline.options import parse
    from gazecrop.pipeline.stream import run_streaming

    images = {"in/kodak/kodim03.png": fixtures_dir / "kodak" / "kodim03.png",
              "in/exif/Portrait_6.jpg": fixtures_dir / "exif_orientation" / "Portrait_6.jpg",
              "in/skimage/coffee.png": fixtures_dir / "skimage" / "coffee.png"}
    bucket = gcs_server.removeprefix("gs://")
    for name, path in images.items():
        with FileSystems.create(f"{gcs_server}/{name}") as f:
            f.write(path.read_bytes())

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, "gcs-events")
    subscription = subscriber.subscription_path(PROJECT, "gazecrop-stream")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    messages = [object_notification(f"{gcs_server}/{name}") for name in images]
    messages.append(_finalize(bucket, "in/kodak/kodim03.png", 1, event="OBJECT_DELETE"))  # ignored
    messages.append(_finalize(bucket, "elsewhere/x.png", 1))  # outside --input_prefix: ignored
    messages.append((b"{truncated", {"eventType": "OBJECT_FINALIZE"}))  # malformed: one error row
    for data, attributes in messages:
        publisher.publish(topic, data, **attributes).result(timeout=30)

    root = tmp_path / "out"
    options, beam_args = parse([
        "--streaming", "--input_subscription", subscription, "--input_prefix", f"{gcs_server}/in/",
        "--output", str(root), "--model", "tiny", "--aspect_ratios", "1:1,16:9", "--window_seconds", "2",
        "--max_batch_duration_secs", "1", "--streaming_duration_secs", "75"])
    # The DirectRunner's Pub/Sub reader advances the watermark (so closes windows) when a pull returns,
    # and a pull on an idle subscription waits up to 30 s: a live bucket's steady trickle of events is
    # played by an ignored event each half second.
    done = threading.Event()
    delete_data, delete_attributes = _finalize(bucket, "in/deleted.png", 1, event="OBJECT_DELETE")

    def trickle():
        while not done.wait(0.5):
            publisher.publish(topic, delete_data, **delete_attributes)

    threading.Thread(target=trickle, daemon=True).start()
    try:  # the DirectRunner's counters are incomplete in streaming (pipeline/stream.py): watch the tables
        summary = run_streaming(options, beam_args, stop_when=lambda c: (
            len(_read_stream_table(root, "metadata")[1]) >= 6 and _read_stream_table(root, "errors")[1]))
    finally:
        done.set()

    # The images were listed at start (--catch_up, on with --input_prefix) and notified: each cropped once.
    assert summary.from_tables
    c = summary.counters
    assert (c["images_cropped"], c["metadata_rows"], c["error_rows"]) == (3, 6, 1)
    names, metadata = _read_stream_table(root, "metadata")
    error_names, errors = _read_stream_table(root, "errors")
    pattern = re.compile(r"^stream-\d{8}T\d{6}Z-\d{8}T\d{6}Z-\d{8}T\d{6}Z-[0-9a-f]{6}-\d{5}-of-\d{5}\.parquet$")
    assert names and all(pattern.match(n) for n in names + error_names), names + error_names
    # Every image cropped and recorded exactly once per ratio, by the tiny model.
    keys = sorted((r["source_uri"], r["aspect_ratio"]) for r in metadata)
    assert keys == sorted((f"{gcs_server}/{name}", ratio) for name in images for ratio in ("1:1", "16:9"))
    assert {r["model_version"] for r in metadata} == {tiny_info.version}
    # Notified or listed at start, each row records its object's generation (transforms/generations.py).
    from google.cloud import storage
    objects = storage.Client(project=PROJECT).bucket(bucket)
    assert {(r["source_uri"], r["source_generation"]) for r in metadata} == {
        (f"{gcs_server}/{name}", str(objects.get_blob(name).generation)) for name in images}
    assert {r["output_uri"] for r in metadata} >= {
        f"{root}/crops/1x1/{crop_name(f'{gcs_server}/in/kodak/kodim03.png', 'kodak/kodim03.png')}",
        f"{root}/crops/16x9/{crop_name(f'{gcs_server}/in/exif/Portrait_6.jpg', 'exif/Portrait_6.jpg')}"}
    for row in metadata:
        assert (root / row["output_uri"][len(str(root)) + 1:]).is_file()
    portrait = {(r["source_width"], r["source_height"]) for r in metadata if "Portrait_6" in r["source_uri"]}
    assert portrait == {(1200, 1800)}
    assert [(e["stage"], e["error_type"]) for e in errors] == [("read", "MalformedNotificationError")]
    assert errors[0]["source_uri"].startswith(f"pubsub://{subscription}#")


@pytest.mark.gcs
@pytest.mark.pubsub
def test_streaming_job_killed_halfway_and_restarted_records_every_image_once(gcs_server, pubsub_server, tmp_path,
                                                                              capsys):
    """tests/streamload.py on a small catalog: 24 images (3 cut short) notified on Pub/Sub, the job
    SIGKILLed once half have crops, started again: every image has its rows or its error row, once."""
    assert streamload(["--images", "24", "--broken", "8", "--kill_at", "0.5", "--window_seconds", "2",
                       "--timeout", "240", "--bucket", gcs_server, "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "accounted: 21 cropped + 3 failed = 24 of 24 images, 0 duplicate rows: OK" in out
    assert "run 1: killed (SIGKILL)" in out


# ----------------------------------------------------------------------------------------------
# Model swap: the handler watches --watch_model_pattern
# ----------------------------------------------------------------------------------------------

def _second_model(directory, name: str = "v2.weights.h5") -> str:
    """A readout file that is the bundled model with one array changed: another model version, cheaply.
    Written under a temporary name and renamed, as a user uploads a model."""
    from gazecrop.model.loading import BUNDLED
    path, partial = directory / name, directory / f"{name}.partial"
    shutil.copyfile(BUNDLED["default"], partial)
    with h5py.File(partial, "r+") as f:
        weight = f["layers/centre_bias/1"]
        weight[...] = np.asarray(weight[()]) * 1.5
    os.replace(partial, path)
    return str(path)


def test_watched_model_is_swapped_in_between_batches(tmp_path, fixtures_dir, tiny_info):
    """Before a newer file matches the pattern the job's model runs; after, every batch runs the new one
    and its results carry its version; a file older than the job is never picked."""
    from gazecrop.model import load_model
    from gazecrop.decode import decode_for_model
    from gazecrop.transforms.inference import DeepGazeModelHandler, ModelWatch, load_cached
    from gazecrop.records import DecodedImage

    models = tmp_path / "models"
    models.mkdir()
    old = _second_model(models, "old.weights.h5")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    data = (fixtures_dir / "kodak" / "kodim03.png").read_bytes()
    pixels = decode_for_model(data, input_size=tiny_info.input_size).pixels
    batch = [DecodedImage("kodim03.png", "kodim03.png", data, "", 768, 512, pixels)]
    handler = DeepGazeModelHandler(tiny_info, watch=ModelWatch(str(models / "*.weights.h5"), interval_secs=0,
                                                               since=time.time() - 60))
    job_model = handler.load_model()
    assert [r.model_version for r in handler.run_inference(batch, job_model)] == [tiny_info.version]

    path = _second_model(models)
    (result,) = handler.run_inference(batch, job_model)
    assert result.model_version == load_model(path).version != tiny_info.version
    expected = load_cached(path).predict(pixels[None].astype(np.float32))[0]
    assert np.allclose(result.log_density, expected)  # made by the new model, not only labelled so


def test_watched_model_with_another_input_size_is_refused(tmp_path, tiny_info):
    from gazecrop.transforms.inference import DeepGazeModelHandler, ModelInfo, ModelWatch
    path = _second_model(tmp_path)
    other = ModelInfo(spec="tiny", version=tiny_info.version, short_side=160)
    handler = DeepGazeModelHandler(other, watch=ModelWatch(str(tmp_path / "*.h5"), interval_secs=0))
    with pytest.raises(ValueError, match="must keep the input short side"):
        handler.run_inference([], handler.load_model())
    assert path
