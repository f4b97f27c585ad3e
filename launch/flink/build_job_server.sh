#!/usr/bin/env bash
# Builds the local Beam Flink job-server jar from launch/flink/pom.xml (see the comment there for why
# it is assembled rather than downloaded) and prints its absolute path on stdout; everything else goes
# to stderr. Idempotent: an existing jar newer than pom.xml is reused without running Maven, and
# Maven's local repository caches the downloads (~200 MB; default ~/.m2/repository, or set
# GAZECROP_M2_REPO). A cold build takes ~2-3 minutes here, mostly download.
#
# Use:  jar=$(launch/flink/build_job_server.sh)
#       python -m gazecrop.pipeline.run ... --runner=FlinkRunner --flink_master=[local] \
#           --flink_job_server_jar="$jar" --environment_type=LOOPBACK
# Needs: a JDK (11 or 17; Flink 1.19 supports those) and Maven on PATH.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/pom.xml"
jar="$here/target/beam-flink-job-server.jar"

if [ -s "$jar" ] && [ "$jar" -nt "$pom" ] && [ "${1:-}" != "--force" ]; then
    echo "$jar"
    exit 0
fi

for tool in java mvn; do
    command -v "$tool" >/dev/null || { echo "build_job_server.sh: '$tool' not found on PATH" >&2; exit 1; }
done

mvn_args=(-B -q -Dstyle.color=never -f "$pom")
[ -n "${GAZECROP_M2_REPO:-}" ] && mvn_args+=("-Dmaven.repo.local=$GAZECROP_M2_REPO")

echo "build_job_server.sh: building $jar (Maven; downloads are cached)" >&2
# stdout of Maven goes to stderr so that this script's stdout is only the jar path.
nice mvn "${mvn_args[@]}" package >&2
[ -s "$jar" ] || { echo "build_job_server.sh: Maven finished but $jar is missing" >&2; exit 1; }
echo "$jar"
