"""Dataflow launch, offline: launch/dataflow.sh's command builds the whole job graph with
`--dry_run=True`; a classic template is generated to a local file with staging on the loopback GCS
server (tests/servers.py); launch/Dockerfile and the Flex Template files agree with the
project. No request leaves the machine: `no_network` refuses every name lookup and connection that is
not loopback. Nothing here talks to the real Dataflow service or builds the container image.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import apache_beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.portability.api import beam_runner_api_pb2

from conftest import run_gazecrop
from servers import BUCKET, MetadataStub

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
IMAGE = "us-central1-docker.pkg.dev/gazecrop-test/gazecrop/worker:0.1.0"
# The job's stages (pipeline/compose.py), as Beam names them inside the "GazeCrop" composite.
STAGES = ["ReadImages", "DecodeImages", "PredictSaliency", "SelectCrops", "WriteCrops", "WriteMetadata",
          "WriteErrors"]


def _setup_pins() -> dict[str, str]:
    """{distribution name (lowercase, extras dropped): version} of setup.py's INSTALL_REQUIRES."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "INSTALL_REQUIRES" for t in node.targets):
            pins = {}
            for requirement in ast.literal_eval(node.value):
                name, version = requirement.split("==")
                pins[re.sub(r"\[.*\]", "", name).lower()] = version
            return pins
    raise AssertionError("setup.py has no INSTALL_REQUIRES")


@pytest.fixture
def no_network(monkeypatch):
    """Refuse name lookups and connections to anything but loopback (in this process)."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    refused = []

    def loopback(host) -> bool:
        host = host.decode() if isinstance(host, bytes) else str(host)
        return host in ("localhost", "::1") or host.startswith("127.")

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not loopback(host):
            refused.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"test: no network ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and not loopback(address[0]):
            refused.append(address)
            raise ConnectionRefusedError(f"test: no network ({address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield refused
    assert refused == [], f"tried to reach {refused}"


@pytest.fixture
def captured_jobs(monkeypatch):
    """The `apiclient.Job`s the DataflowRunner builds (its dry-run result carries the job)."""
    from apache_beam.runners.dataflow import dataflow_runner
    jobs = []
    original = dataflow_runner.DataflowRunner.run_pipeline

    def run_pipeline(self, pipeline, options, pipeline_proto=None):
        result = original(self, pipeline, options, pipeline_proto)
        jobs.append(self.job)
        return result

    monkeypatch.setattr(dataflow_runner.DataflowRunner, "run_pipeline", run_pipeline)
    return jobs


def dataflow_sh(*args: str, **env: str) -> list[str]:
    """The command launch/dataflow.sh would run (its --print output), split into words."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PROJECT", "REGION", "BUCKET", "IMAGE")}
    out = subprocess.run(["bash", str(LAUNCH / "dataflow.sh"), "--print", *args], env={**environ, **env},
                         check=True, capture_output=True, text=True).stdout
    return shlex.split(out)


def transform_names(job) -> set[str]:
    return {t.unique_name for t in job.proto_pipeline.components.transforms.values()}


def test_dataflow_sh_defaults_and_overrides():
    cmd = dataflow_sh("--input", "gs://in/*", "--output", "gs://out", PROJECT="proj-1", BUCKET="bkt")
    assert cmd[:3] == ["python", "-m", "gazecrop.pipeline.run"]
    for flag in ["--runner=DataflowRunner", "--project=proj-1", "--region=us-central1",
                 "--temp_location=gs://bkt/temp", "--staging_location=gs://bkt/staging",
                 "--setup_file=./setup.py", "--machine_type=g2-standard-4",
                 "--sdk_container_image=us-central1-docker.pkg.dev/proj-1/gazecrop/worker:latest",
                 "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
                 "--experiments=use_runner_v2", "--number_of_worker_harness_threads=1"]:
        assert flag in cmd
    assert cmd[-4:] == ["--input", "gs://in/*", "--output", "gs://out"]  # passed through, last
    cmd = dataflow_sh(PROJECT="p-2", REGION="europe-west4", IMAGE="img:1", MACHINE_TYPE="g2-standard-8",
                      GPU_COUNT="2", DRY="1")
    assert {"--region=europe-west4", "--sdk_container_image=img:1", "--machine_type=g2-standard-8",
            "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:2;install-nvidia-driver"} <= set(cmd)


def test_dry_run_builds_the_whole_job_graph_offline(no_network, captured_jobs, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    cmd = dataflow_sh("--input", "gs://gazecrop-in/photos/**", "--output", "gs://gazecrop-out/crops",
                      "--model", "tiny", "--aspect_ratios", "1:1,16:9", "--dry_run=True",
                      PROJECT="gazecrop-test", BUCKET="gazecrop-test", IMAGE=IMAGE)
    summary = run_gazecrop(cmd[3:])
    assert summary.read == 0
    assert "dry run: Dataflow job graph built, not submitted" in capsys.readouterr().out
    (job,) = captured_jobs
    names = transform_names(job)
    for stage in STAGES:
        assert f"GazeCrop/{stage}" in names, stage
    assert any(n.startswith("GazeCrop/PredictSaliency/") and "RunInference" in n for n in names)
    images = {beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
              for env in job.proto_pipeline.components.environments.values() if env.payload}
    assert images == {IMAGE}
    options = job.options.get_all_options()
    assert options["dataflow_service_options"] == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    assert options["machine_type"] == "g2-standard-4"
    assert "use_runner_v2" in options["experiments"]


@pytest.mark.gcs
def test_template_generated_to_local_file_with_staging_on_loopback_gcs(
        gcs_server, no_network, monkeypatch, tmp_path, capsys):  # noqa: F811
    monkeypatch.chdir(ROOT)
    template = tmp_path / "gazecrop-template.json"
    cmd = dataflow_sh("--input", f"{gcs_server}/in/**", "--output", f"{gcs_server}/out-template",
                      "--model", "tiny", f"--template_location={template}",
                      PROJECT="gazecrop-test", BUCKET=BUCKET, IMAGE=IMAGE, JOB_NAME="gazecrop-template-test")
    run_gazecrop(cmd[3:])
    assert f"Dataflow template written to {template}" in capsys.readouterr().out
    spec = json.loads(template.read_text())
    assert spec["name"] == "gazecrop-template-test" and spec["type"] == "JOB_TYPE_BATCH"
    (pool,) = spec["environment"]["workerPools"]
    assert pool["workerHarnessContainerImage"] == IMAGE and pool["machineType"] == "g2-standard-4"
    assert pool["numThreadsPerWorker"] == 1
    options = spec["environment"]["sdkPipelineOptions"]["options"]
    assert options["dataflow_service_options"] == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    # Runner v2 templates carry the job graph as a staged pipeline proto, not as steps in the JSON.
    staged = {m.path.rsplit("/", 1)[1]: m.path
              for m in FileSystems.match([f"{gcs_server}/staging/gazecrop-template-test.*/*"])[0].metadata_list}
    assert {"pipeline.pb", "workflow.tar.gz", "submission_environment_dependencies.txt"} <= set(staged)
    assert {p["name"] for p in pool["packages"]} >= {"workflow.tar.gz"}  # the sdist --setup_file built
    with FileSystems.open(staged["pipeline.pb"]) as f:
        proto = beam_runner_api_pb2.Pipeline.FromString(f.read())
    names = {t.unique_name for t in proto.components.transforms.values()}
    for stage in STAGES:
        assert f"GazeCrop/{stage}" in names, stage
    assert any(n.startswith("GazeCrop/PredictSaliency/") and "RunInference" in n for n in names)
    assert any(p.endswith("/token") for p in MetadataStub.paths)  # credentials came from the loopback stub


def test_dockerfile_agrees_with_beam_python_and_setup_py():
    text = (LAUNCH / "Dockerfile").read_text()
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line for line in instructions if line.upper().startswith("FROM ")]
    assert len(froms) == 1, froms
    match = re.fullmatch(r"FROM apache/beam_python(\d+)\.(\d+)_sdk:(\S+)", froms[0])
    assert match, froms[0]
    pins = _setup_pins()
    assert match.group(3) == apache_beam.__version__ == pins["apache-beam"]
    assert (int(match.group(1)), int(match.group(2))) == sys.version_info[:2], \
        "the image's Python must be the submitting machine's Python (pickled job)"
    assert not any(line.upper().startswith(("ENTRYPOINT", "CMD")) for line in instructions), \
        "keep the Beam image's ENTRYPOINT (the SDK worker boot)"
    pinned = re.findall(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([0-9][^\s'\"]*)", text)
    assert pinned, "the Dockerfile pins nothing"
    for name, version in pinned:
        assert pins.get(name.lower()) == version, f"{name}=={version} in the Dockerfile, setup.py: {pins.get(name.lower())}"
    assert "tensorflow[and-cuda]==" in text  # GPU TensorFlow: the CUDA 12 / cuDNN wheels
    for path in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in path.split():
            assert (ROOT / source).exists(), source


def test_flex_template_files():
    metadata = json.loads((LAUNCH / "flex_template_metadata.json").read_text())
    assert metadata["name"] and metadata["description"]
    from gazecrop.pipeline.options import build_parser
    ours = {a.dest for a in build_parser()._actions} | {"input"}
    names = [p["name"] for p in metadata["parameters"]]
    assert {"input", "output", "aspect_ratios", "model"} <= set(names)
    assert set(names) <= ours, set(names) - ours  # every parameter is a gazecrop option
    for param in metadata["parameters"]:
        for regex in param.get("regexes", []):
            re.compile(regex)
    env = {**os.environ, "NIGHTLY_INPUT": "gs://b/in/**", "NIGHTLY_OUTPUT": "gs://b/out",
           "SCHEDULER_SA": "sa@p.iam.gserviceaccount.com", "PROJECT": "p"}
    for what in (["build"], ["run", "gs://b/in/**", "gs://b/out"], ["schedule"]):
        out = subprocess.run(["bash", str(LAUNCH / "flex_template.sh"), "--print", *what], env=env,
                             check=True, capture_output=True, text=True).stdout
        assert out.startswith("gcloud "), out
    assert "install-nvidia-driver" in out
