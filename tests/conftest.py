"""Shared test helpers: where the fixture images are, the tiny model, a small pipeline runner.

Fixture images are never committed: they live in ../shared/data/fixtures beside the clone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "data" / "fixtures"


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end run with the real bundled model (slower)")
    config.addinivalue_line("markers", "gcs: talks to a local GCS API server (gcp-storage-emulator)")
    config.addinivalue_line("markers", "pubsub: talks to Google's Pub/Sub emulator on loopback")
    config.addinivalue_line("markers", "flink: runs on a local Flink engine (Beam's Flink job server, Java)")
    config.addinivalue_line("filterwarnings", "ignore:cannot collect test class 'TestPipeline'")
    # core/decode.py sets Pillow's guard to --max_megapixels and ignores its below-limit warning.
    config.addinivalue_line("filterwarnings", "ignore::PIL.Image.DecompressionBombWarning")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"fixture images not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_info():
    """ModelInfo of the tiny deterministic test model (no weights file)."""
    from gazecrop.transforms.inference import describe_model
    return describe_model("tiny")


def run_gazecrop(argv: list[str]):
    """`gazecrop run` in-process on the FnApiRunner (no Prism download attempt) with the tiny model
    unless argv names another."""
    from gazecrop.pipeline.run import run
    argv = list(argv)
    if not any(a.startswith("--model") for a in argv):
        argv += ["--model", "tiny"]
    if not any(a.startswith("--runner") for a in argv):
        argv += ["--runner=FnApiRunner"]
    return run(argv)


def crop_name(source_uri, relpath: str, extension: str = "jpg") -> str:
    """The crop file name (under ROOT/crops/<ratio>/) of the source at `source_uri`, named `relpath`
    relative to its input root (`gazecrop.paths.output_relpath`)."""
    from gazecrop.paths import output_relpath
    return f"{output_relpath(str(source_uri), relpath)}.{extension}"


def read_tables(root) -> tuple[list[dict], list[dict]]:
    from gazecrop.transforms.metadata import read_table
    return read_table(str(root), "metadata").to_pylist(), read_table(str(root), "errors").to_pylist()


def assert_accounted(metadata: list[dict], errors: list[dict], inputs: list[str], ratios: list[str],
                     candidates: int = 1) -> None:
    """The accounting invariant: every input ends as exactly one error row, or as metadata rows for every
    ratio with ranks 0 .. n-1 (1 <= n <= candidates: the ranks the search produced), never both."""
    cropped = {r["source_uri"] for r in metadata}
    failed = [r["source_uri"] for r in errors]
    assert len(failed) == len(set(failed)), "an input has several error rows"
    assert not cropped & set(failed), "an input is both cropped and failed"
    assert sorted(cropped | set(failed)) == sorted(inputs)
    for uri in cropped:
        rows = [r for r in metadata if r["source_uri"] == uri]
        assert sorted({r["aspect_ratio"] for r in rows}) == sorted(ratios), uri
        for ratio in ratios:
            ranks = sorted(r["rank"] for r in rows if r["aspect_ratio"] == ratio)
            assert ranks == list(range(len(ranks))) and 1 <= len(ranks) <= candidates, (uri, ratio, ranks)


@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory):
    """`gs://BUCKET` on a real GCS API server on loopback (tests/servers.py), stopped after the module."""
    from servers import gcs_emulator
    with gcs_emulator(tmp_path_factory.mktemp("no-gcloud-config")) as server:
        yield server.bucket


@pytest.fixture(scope="module")
def pubsub_server(tmp_path_factory):
    """Google's Pub/Sub emulator on loopback (tests/servers.py), PUBSUB_EMULATOR_HOST set; stopped after
    the module. Skipped where the Cloud SDK's emulator or Java is missing."""
    import shutil
    from servers import PUBSUB_EMULATOR, pubsub_emulator
    if not PUBSUB_EMULATOR.exists() or shutil.which("java") is None:
        pytest.skip(f"Pub/Sub emulator ({PUBSUB_EMULATOR}) or java not found")
    with pubsub_emulator(tmp_path_factory.mktemp("pubsub-emulator")) as host:
        yield host
