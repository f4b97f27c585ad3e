#!/usr/bin/env bash
# Submit gazecrop to a Flink cluster (Flink 1.19.x) through Beam's FlinkRunner.
#
#   FLINK_MASTER=flink-jm.internal:8081 launch/flink.sh --input 'gs://my-bucket/catalog/**' \
#     --output gs://my-bucket/crops [more gazecrop or Beam options]
#   launch/flink.sh --print ...     # print the command instead of running it (also DRY=1)
#
# The machine that submits builds the job graph and starts Beam's Flink job server from the jar that
# launch/flink/build_job_server.sh assembles (Beam Java 2.62.0 for Flink 1.19: the cluster must run
# Flink 1.19.x). Inputs and outputs must be reachable from every TaskManager: gs://, s3:// or a shared
# filesystem. Every argument other than --print goes to `python -m gazecrop.pipeline.run`, after the defaults
# here, so a single-valued option given again wins.
#
# Where the Python SDK workers run (ENVIRONMENT_TYPE):
#   DOCKER    [default] each TaskManager starts the worker container IMAGE (build it from
#             launch/Dockerfile: Beam's Python 3.11 SDK image + TensorFlow + gazecrop). Needs a Docker
#             engine on the TaskManagers.
#   EXTERNAL  the TaskManagers ask a worker pool at WORKER_POOL [localhost:50000]: run one beside each
#             TaskManager (a sidecar container from the same image, or a process in a venv with gazecrop
#             installed): `python -m apache_beam.runners.worker.worker_pool_main --service_port=50000`.
#             For clusters without Docker (Kubernetes with the Flink operator: a sidecar).
#   PROCESS   the TaskManager starts `$WORKER_BOOT` itself (a boot binary from the SDK image copied to
#             every TaskManager); rarely the easiest.
#   LOOPBACK  the workers run inside this submitting process: only for FLINK_MASTER=[local] (tests,
#             one-machine runs).
#
# Environment (defaults in brackets):
#   FLINK_MASTER     the JobManager's REST address host:port, or [local] for an embedded cluster  [required]
#   ENVIRONMENT_TYPE DOCKER, EXTERNAL, PROCESS or LOOPBACK                         [DOCKER; LOOPBACK for [local]]
#   IMAGE            worker container for DOCKER                                  [gazecrop-worker:latest]
#   WORKER_POOL      worker pool address for EXTERNAL                             [localhost:50000]
#   WORKER_BOOT      boot command for PROCESS                                      [/opt/apache/beam/boot]
#   PARALLELISM      Flink parallelism                                             [cluster default: -1]
#   JOB_SERVER_JAR   the job-server jar                          [built by launch/flink/build_job_server.sh]
#   PYTHON           interpreter that builds the job                              [python]
#   DRY              1: print the command instead of running it (same as --print) [0]
set -euo pipefail

DRY="${DRY:-0}"
args=()
for arg in "$@"; do
  if [[ "$arg" == "--print" ]]; then DRY=1; else args+=("$arg"); fi
done

: "${FLINK_MASTER:?set FLINK_MASTER to the JobManager address host:port (or [local])}"
if [[ "$FLINK_MASTER" == "[local]" ]]; then default_env=LOOPBACK; else default_env=DOCKER; fi
ENVIRONMENT_TYPE="${ENVIRONMENT_TYPE:-$default_env}"
PYTHON="${PYTHON:-python}"
PARALLELISM="${PARALLELISM:--1}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${JOB_SERVER_JAR:-}" ]]; then
  if [[ "$DRY" == "1" ]]; then JOB_SERVER_JAR="launch/flink/target/beam-flink-job-server.jar"
  else JOB_SERVER_JAR="$(launch/flink/build_job_server.sh)"; fi
fi

case "$ENVIRONMENT_TYPE" in
  DOCKER)   environment=(--environment_type=DOCKER "--environment_config=${IMAGE:-gazecrop-worker:latest}") ;;
  EXTERNAL) environment=(--environment_type=EXTERNAL "--environment_config=${WORKER_POOL:-localhost:50000}") ;;
  PROCESS)  environment=(--environment_type=PROCESS "--environment_config={\"command\": \"${WORKER_BOOT:-/opt/apache/beam/boot}\"}") ;;
  LOOPBACK) environment=(--environment_type=LOOPBACK) ;;
  *) echo "launch/flink.sh: ENVIRONMENT_TYPE must be DOCKER, EXTERNAL, PROCESS or LOOPBACK, not $ENVIRONMENT_TYPE" >&2; exit 2 ;;
esac

cmd=(
  "$PYTHON" -m gazecrop.pipeline.run
  --runner=FlinkRunner
  "--flink_master=${FLINK_MASTER}"
  "--flink_job_server_jar=${JOB_SERVER_JAR}"
  "--parallelism=${PARALLELISM}"
  "${environment[@]}"
  "${args[@]}"
)

if [[ "$DRY" == "1" ]]; then
  printf '%q ' "${cmd[@]}"
  printf '\n'
else
  exec "${cmd[@]}"
fi
