#!/usr/bin/env bash
# Serve the model in local_test/test_dir/model on http://localhost:$PORT (default 8080), in the image
# (default) or as a local gunicorn from .venv. Ctrl-C (SIGTERM/SIGINT) stops it.
#
#   local_test/serve_local.sh [IMAGE]          # docker run -p PORT:8080 -v test_dir/model:/opt/ml/model IMAGE serve
#   local_test/serve_local.sh --local          # serve.sh with SAGEMAKER_BASE_DIR=test_dir
#   PORT=8081 CONTAINER_NAME=fm-demo local_test/serve_local.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
mode="${MODE:-docker}"
if [ "${1:-}" = "--local" ]; then mode=process; shift; fi
image="${1:-${IMAGE:-fm-wals:latest}}"
dir="$(cd "${TEST_DIR:-$here/test_dir}" && pwd)"
port="${PORT:-8080}"

[ -f "$dir/model/model.json" ] || echo "warning: no model in $dir/model (run local_test/train_local.sh first)" >&2

case "$mode" in
    docker)
        name_args=()
        [ -n "${CONTAINER_NAME:-}" ] && name_args=(--name "$CONTAINER_NAME")
        # exec: SIGTERM/SIGINT to this script reach `docker run`, which forwards them to gunicorn.
        exec docker run --rm "${name_args[@]}" -p "$port":8080 -v "$dir/model":/opt/ml/model "$image" serve
        ;;
    process)
        export SAGEMAKER_BASE_DIR="$dir" SAGEMAKER_BIND_TO_PORT="$port"
        export PATH="$repo/.venv/bin:$PATH"
        exec "$repo/serve.sh"
        ;;
    *)
        echo "MODE must be docker or process, not '$mode'" >&2; exit 2
        ;;
esac
