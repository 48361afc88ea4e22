#!/usr/bin/env bash
# Train on local_test/test_dir (shaped like /opt/ml): in the image (default) or as a local process.
#
#   local_test/train_local.sh [IMAGE]          # docker run --rm -v test_dir:/opt/ml IMAGE train
#   local_test/train_local.sh --local          # .venv/bin/python train with SAGEMAKER_BASE_DIR=test_dir
#   MODE=process TEST_DIR=/some/opt_ml local_test/train_local.sh
#
# model/ and output/ under the test dir are emptied first; the exit code is train's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
mode="${MODE:-docker}"
if [ "${1:-}" = "--local" ]; then mode=process; shift; fi
image="${1:-${IMAGE:-fm-wals:latest}}"
dir="$(cd "${TEST_DIR:-$here/test_dir}" && pwd)"

rm -rf "$dir/model" "$dir/output"
mkdir -p "$dir/model" "$dir/output"

status=0
case "$mode" in
    docker)
        docker run --rm -v "$dir":/opt/ml "$image" train || status=$?
        ;;
    process)
        SAGEMAKER_BASE_DIR="$dir" PYTHONPATH="$repo" "$repo/.venv/bin/python" "$repo/train" || status=$?
        ;;
    *)
        echo "MODE must be docker or process, not '$mode'" >&2; exit 2
        ;;
esac

if [ "$status" -ne 0 ] && [ -s "$dir/output/failure" ]; then
    echo "--- training failed (exit $status); output/failure:" >&2
    cat "$dir/output/failure" >&2
fi
exit "$status"
