#!/usr/bin/env bash
# SageMaker serving entry point (installed as `serve` in the image): `docker run IMAGE serve`.
#
# With nginx on PATH (the image has Debian's): nginx listens on $SAGEMAKER_BIND_TO_PORT and hands each request,
# once it has read it whole, to gunicorn on a unix socket in a private run directory (serve/nginx.conf says why).
# This script stays PID 1 and supervises both:
#   - SIGTERM/SIGINT: nginx stops gracefully (SIGQUIT: in-flight requests finish, for at most 20 s), then
#     gunicorn (SIGTERM); the exit status is gunicorn's (0).
#   - either exits on its own (a model that does not load, a crash): the other is stopped and the script
#     exits non-zero, so the container ends instead of answering 502 forever.
# Without nginx on PATH (a host without it): exec gunicorn, which binds the port itself and is PID 1. Fine for
# local use; a slow or stalled client then holds one of gunicorn's request threads (docs/serving.md).
# Bind address, workers and timeouts come from serve/gunicorn_conf.py and serve/nginx_conf.py (SAGEMAKER_*).
set -euo pipefail
here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
cd "$here"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"

if ! command -v nginx >/dev/null 2>&1; then
    echo "serve: nginx is not on PATH, so gunicorn serves port ${SAGEMAKER_BIND_TO_PORT:-8080} itself: fine for local" \
        "use, but a slow or stalled client holds one of its few request threads (docs/serving.md)" >&2
    exec gunicorn -c "$here/serve/gunicorn_conf.py" serve.wsgi:app "$@"
fi

log() { printf '[%s %s %s] serve: %s\n' "$(date -u '+%m/%d/%Y %H:%M:%S')" "$1" "$$" "$2" >&2; }

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/serve.XXXXXX")"
trap 'rm -rf "$run_dir"' EXIT
chmod 0755 "$run_dir"  # nginx's workers (nobody, when started as root) reach the socket and their temp files
python3 -m serve.nginx_conf "$run_dir" >"$run_dir/nginx.conf"  # exits 1 naming a malformed SAGEMAKER_* setting

stopping=""
trap 'stopping=1' TERM INT
socket="$run_dir/gunicorn.sock"
gunicorn -c "$here/serve/gunicorn_conf.py" --bind "unix:$socket" --keep-alive 75 serve.wsgi:app "$@" &
gunicorn_pid=$!
while [ -z "$stopping" ] && [ ! -S "$socket" ] && kill -0 "$gunicorn_pid" 2>/dev/null; do
    sleep 0.1  # gunicorn loads the model, then listens; nginx starts once there is something to proxy to
done
if [ -z "$stopping" ] && [ ! -S "$socket" ]; then
    gunicorn_status=0  # gunicorn did not start (it has said why, e.g. a model that does not load)
    wait "$gunicorn_pid" || gunicorn_status=$?
    exit $(( gunicorn_status ? gunicorn_status : 1 ))
fi
nginx -e stderr -c "$run_dir/nginx.conf" &
nginx_pid=$!
while [ -z "$stopping" ] && kill -0 "$nginx_pid" 2>/dev/null && kill -0 "$gunicorn_pid" 2>/dev/null; do
    wait -n "$nginx_pid" "$gunicorn_pid" || true  # returns when either exits, or at once on SIGTERM
done
trap '' TERM INT

if [ -z "$stopping" ]; then
    kill -0 "$nginx_pid" 2>/dev/null && log ERROR "gunicorn exited; stopping nginx" || log ERROR "nginx exited; stopping gunicorn"
fi
# A background job starts with SIGQUIT ignored, and nginx handles it only once it has set up: repeat it until
# nginx exits (its graceful stop lasts at most 20 s), then SIGKILL.
tries=0
while kill -QUIT "$nginx_pid" 2>/dev/null && (( tries++ < 250 )); do
    sleep 0.1
done
kill -KILL "$nginx_pid" 2>/dev/null || true
nginx_status=0
wait "$nginx_pid" || nginx_status=$?
kill -TERM "$gunicorn_pid" 2>/dev/null || true
gunicorn_status=0
wait "$gunicorn_pid" || gunicorn_status=$?
if [ -z "$stopping" ]; then
    exit $(( gunicorn_status ? gunicorn_status : (nginx_status ? nginx_status : 1) ))
fi
exit $(( gunicorn_status ? gunicorn_status : nginx_status ))
