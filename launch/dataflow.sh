#!/usr/bin/env bash
# Submit gazecrop to Google Cloud Dataflow on GPU workers (one NVIDIA L4 per worker).
#
#   PROJECT=my-project BUCKET=my-bucket IMAGE=us-docker.pkg.dev/my-project/gazecrop/worker:0.1.0 \
#     launch/dataflow.sh --input 'gs://my-bucket/catalog/**' --output gs://my-bucket/crops [more options]
#   launch/dataflow.sh --print ...     # print the command instead of running it (also DRY=1)
#
# Run it from the repository root with the project installed (`pip install -e .`), on Python 3.11 with
# apache-beam 2.77.0: the machine that submits builds the job graph, and the workers run the image built
# from launch/Dockerfile (same Beam, same Python). Every argument after the options below is passed on
# to `python -m gazecrop.pipeline.run` (gazecrop's options and any Beam/Dataflow option): a single-valued option
# given again overrides the default here (the last value wins); list options (--experiments,
# --dataflow_service_options) add to these, so change the GPU through GPU_TYPE/GPU_COUNT.
#
# Environment (defaults in brackets):
#   PROJECT, REGION, BUCKET, IMAGE, MACHINE_TYPE, GPU_TYPE, GPU_COUNT, MAX_WORKERS: see launch/gcp_settings.sh
#   JOB_NAME       Dataflow job name                                     [gazecrop-<UTC timestamp>]
#   PYTHON         interpreter that builds the job                       [python]
#   DRY            1: print the command instead of running it (same as --print) [0]
#
# GPU settings: one SDK process per worker VM (--experiments=no_use_multiple_sdk_containers) with one
# harness thread (--number_of_worker_harness_threads=1), so one TensorFlow model owns the GPU and batches
# of --batch_size images reach it one at a time; Runner v2 (required for custom containers and GPUs).
set -euo pipefail

DRY="${DRY:-0}"
args=()
for arg in "$@"; do
  if [[ "$arg" == "--print" ]]; then DRY=1; else args+=("$arg"); fi
done

# shellcheck source=launch/gcp_settings.sh
source "$(dirname "${BASH_SOURCE[0]}")/gcp_settings.sh"
JOB_NAME="${JOB_NAME:-gazecrop-$(date -u +%Y%m%d-%H%M%S)}"
PYTHON="${PYTHON:-python}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."  # --setup_file ./setup.py is relative to the repository root

cmd=(
  "$PYTHON" -m gazecrop.pipeline.run
  --runner=DataflowRunner
  "--project=${PROJECT}"
  "--region=${REGION}"
  "--job_name=${JOB_NAME}"
  "--temp_location=gs://${BUCKET}/temp"
  "--staging_location=gs://${BUCKET}/staging"
  --setup_file=./setup.py
  "--sdk_container_image=${IMAGE}"
  --sdk_location=container
  "--machine_type=${MACHINE_TYPE}"
  "--dataflow_service_options=worker_accelerator=type:${GPU_TYPE};count:${GPU_COUNT};install-nvidia-driver"
  --experiments=use_runner_v2
  --experiments=no_use_multiple_sdk_containers
  --number_of_worker_harness_threads=1
  "--max_num_workers=${MAX_WORKERS}"
  --disk_size_gb=50
  "${args[@]}"
)

if [[ "$DRY" == "1" ]]; then
  printf '%q ' "${cmd[@]}"
  printf '\n'
else
  exec "${cmd[@]}"
fi
