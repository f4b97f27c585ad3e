#!/usr/bin/env bash
# gazecrop as a Dataflow Flex Template: build the template once, launch it by hand or on a schedule.
#
#   launch/flex_template.sh build              # write gs://$BUCKET/templates/gazecrop.json
#   launch/flex_template.sh run INPUT OUTPUT   # launch one job from it
#   launch/flex_template.sh schedule           # Cloud Scheduler job: launch it nightly
#   launch/flex_template.sh --print <command>  # print the gcloud commands instead (also DRY=1)
#
# Before `build`: build and push the worker image (it is also the template's launcher image):
#   docker build -f launch/Dockerfile -t "$IMAGE" . && docker push "$IMAGE"
#
# Environment: PROJECT, REGION, BUCKET, IMAGE, MACHINE_TYPE, GPU_TYPE, GPU_COUNT, MAX_WORKERS as in
#   launch/gcp_settings.sh; and
#   TEMPLATE [gs://${BUCKET}/templates/gazecrop.json],
#   SCHEDULE [0 2 * * *] (cron, TIME_ZONE [Etc/UTC]), SCHEDULER_SA (service account that launches
#   the nightly job; needs roles/dataflow.admin and to act as the worker service account),
#   NIGHTLY_INPUT, NIGHTLY_OUTPUT (the scheduled job's --input and --output).
#
# Not run in gazecrop's tests (no Google Cloud access there); see docs/dataflow.md.
set -euo pipefail

DRY="${DRY:-0}"
if [[ "${1:-}" == "--print" ]]; then DRY=1; shift; fi
what="${1:-}"; shift || true

# shellcheck source=launch/gcp_settings.sh
source "$(dirname "${BASH_SOURCE[0]}")/gcp_settings.sh"
TEMPLATE="${TEMPLATE:-gs://${BUCKET}/templates/gazecrop.json}"
SCHEDULE="${SCHEDULE:-0 2 * * *}"
TIME_ZONE="${TIME_ZONE:-Etc/UTC}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Worker settings every launch carries (pipeline options travel as template parameters; `^~^` makes
# `~` gcloud's list separator instead of `,`, which values such as aspect_ratios=1:1,16:9 contain).
additional_experiments="use_runner_v2,no_use_multiple_sdk_containers"
service_options="worker_accelerator=type:${GPU_TYPE};count:${GPU_COUNT};install-nvidia-driver"

run() {
  if [[ "$DRY" == "1" ]]; then printf '%q ' "$@"; printf '\n'; else "$@"; fi
}

case "$what" in
  build)
    run gcloud dataflow flex-template build "$TEMPLATE" \
      --project="$PROJECT" \
      --image="$IMAGE" \
      --sdk-language=PYTHON \
      --metadata-file=launch/flex_template_metadata.json \
      --additional-experiments="$additional_experiments" \
      --worker-machine-type="$MACHINE_TYPE" \
      --max-workers="$MAX_WORKERS" \
      --temp-location="gs://${BUCKET}/temp" \
      --staging-location="gs://${BUCKET}/staging" \
      "$@"
    ;;
  run)
    input="${1:?usage: flex_template.sh run INPUT OUTPUT [gcloud options]}"
    output="${2:?usage: flex_template.sh run INPUT OUTPUT [gcloud options]}"
    shift 2
    run gcloud dataflow flex-template run "gazecrop-$(date -u +%Y%m%d-%H%M%S)" \
      --project="$PROJECT" \
      --region="$REGION" \
      --template-file-gcs-location="$TEMPLATE" \
      --additional-experiments="$additional_experiments" \
      --additional-user-labels=app=gazecrop \
      --worker-machine-type="$MACHINE_TYPE" \
      --max-workers="$MAX_WORKERS" \
      --temp-location="gs://${BUCKET}/temp" \
      --staging-location="gs://${BUCKET}/staging" \
      --parameters="^~^input=${input}~output=${output}~sdk_container_image=${IMAGE}~dataflow_service_options=${service_options}~number_of_worker_harness_threads=1" \
      "$@"
    ;;
  schedule)
    # Cloud Scheduler calls the Dataflow REST API (projects.locations.flexTemplates.launch) nightly.
    : "${NIGHTLY_INPUT:?set NIGHTLY_INPUT (e.g. gs://my-bucket/catalog/**)}"
    : "${NIGHTLY_OUTPUT:?set NIGHTLY_OUTPUT (e.g. gs://my-bucket/crops)}"
    : "${SCHEDULER_SA:?set SCHEDULER_SA (service account email Cloud Scheduler authenticates as)}"
    body=$(cat <<JSON
{"launchParameter": {
  "jobName": "gazecrop-nightly",
  "containerSpecGcsPath": "${TEMPLATE}",
  "parameters": {"input": "${NIGHTLY_INPUT}", "output": "${NIGHTLY_OUTPUT}", "incremental": "true",
                 "sdk_container_image": "${IMAGE}",
                 "dataflow_service_options": "${service_options}",
                 "number_of_worker_harness_threads": "1"},
  "environment": {"machineType": "${MACHINE_TYPE}", "maxWorkers": ${MAX_WORKERS},
                  "tempLocation": "gs://${BUCKET}/temp", "stagingLocation": "gs://${BUCKET}/staging",
                  "additionalExperiments": ["use_runner_v2", "no_use_multiple_sdk_containers"]}}}
JSON
)
    run gcloud scheduler jobs create http gazecrop-nightly \
      --project="$PROJECT" \
      --location="$REGION" \
      --schedule="$SCHEDULE" \
      --time-zone="$TIME_ZONE" \
      --http-method=POST \
      --uri="https://dataflow.googleapis.com/v1b3/projects/${PROJECT}/locations/${REGION}/flexTemplates:launch" \
      --oauth-service-account-email="$SCHEDULER_SA" \
      --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform \
      --headers=Content-Type=application/json \
      --message-body="$body" \
      "$@"
    ;;
  *)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac
