# Google Cloud settings shared by launch/dataflow.sh and launch/flex_template.sh (sourced, not run).
# Each comes from the environment, with the default in brackets; the two scripts document their own
# extra variables.
#   PROJECT        Google Cloud project                                  [gcloud config get-value project]
#   REGION         Dataflow region (must offer L4 GPUs)                  [us-central1]
#   BUCKET         bucket for temp/ and staging/ (no gs://)             [${PROJECT}-gazecrop]
#   IMAGE          worker image built from launch/Dockerfile            [${REGION}-docker.pkg.dev/${PROJECT}/gazecrop/worker:latest]
#   MACHINE_TYPE   worker machine type; g2-standard-* carry L4 GPUs      [g2-standard-4]
#   GPU_TYPE       accelerator type                                      [nvidia-l4]
#   GPU_COUNT      GPUs per worker                                       [1]
#   MAX_WORKERS    autoscaling ceiling                                   [4]
# With DRY=1 (printing commands only) a missing PROJECT becomes "my-project" instead of asking gcloud.

if [[ -z "${PROJECT:-}" ]]; then
  if [[ "${DRY:-0}" == "1" ]]; then
    PROJECT="my-project"
  else
    PROJECT="$(gcloud config get-value project 2>/dev/null || true)"
  fi
fi
if [[ -z "${PROJECT}" ]]; then
  echo "$(basename "$0"): set PROJECT (or 'gcloud config set project ...')" >&2
  exit 2
fi
REGION="${REGION:-us-central1}"
BUCKET="${BUCKET:-${PROJECT}-gazecrop}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/gazecrop/worker:latest}"
MACHINE_TYPE="${MACHINE_TYPE:-g2-standard-4}"
GPU_TYPE="${GPU_TYPE:-nvidia-l4}"
GPU_COUNT="${GPU_COUNT:-1}"
MAX_WORKERS="${MAX_WORKERS:-4}"
