#!/usr/bin/env bash
# make demo: train FM on the bundled sample (digits, "is it a 0?") and serve one prediction request.
# In Docker when an engine answers (the image is built first), else as local processes from .venv.
#
#   scripts/demo.sh      # MODE=docker|process forces one; IMAGE=fm-wals:latest; TEST_DIR=local_test/test_dir
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-fm-wals:latest}"
TEST_DIR="$(cd "${TEST_DIR:-$repo/local_test/test_dir}" && pwd)"
export TEST_DIR
mode="${MODE:-}"
why=""
if [ -z "$mode" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then mode=docker; else
        mode=process; why=" (no Docker engine answers)"
    fi
fi
export MODE="$mode" IMAGE

say() { printf '\n== %s\n' "$*"; }

if [ "$mode" = docker ]; then
    say "building $IMAGE"
    "$repo/scripts/build_image.sh"
else
    say "running train and serve as local processes from .venv$why"
fi

say "training ($mode) on $TEST_DIR: $(tr -d '\n ' <"$TEST_DIR/input/config/hyperparameters.json")"
"$repo/local_test/train_local.sh"
ls -l "$TEST_DIR/model"

port="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
export PORT="$port" CONTAINER_NAME="fm-wals-demo-$$"
log="$(mktemp /tmp/fm-wals-demo-serve.XXXXXX.log)"
say "serving ($mode) on http://localhost:$port (log: $log)"
"$repo/local_test/serve_local.sh" >"$log" 2>&1 &
server=$!
cleanup() {
    local status=$?
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    if [ "$mode" = docker ]; then docker rm -f "$CONTAINER_NAME" >/dev/null 2>&1 || true; fi
    if [ "$status" -eq 0 ]; then rm -f "$log"; fi  # keep the server log when something failed
}
trap cleanup EXIT

for _ in $(seq 1 240); do
    if curl -fsS "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then
        cat "$log" >&2
        echo "the server exited before answering /ping" >&2
        exit 1
    fi
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/ping" >/dev/null || { cat "$log" >&2; echo "no answer on /ping" >&2; exit 1; }

say "POST /invocations (application/json, 5 test digits)"
"$repo/local_test/predict.sh" "$repo/local_test/requests/digits.json" application/json
echo
echo "true labels (1.0 = the digit is a 0): $(cat "$repo/local_test/requests/expected_labels.json")"
