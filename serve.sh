#!/usr/bin/env bash
# SageMaker serving entry point (installed as `serve` in the image): `docker run IMAGE serve`.
# exec replaces this shell with gunicorn, so gunicorn is PID 1 and gets SageMaker's SIGTERM directly.
# Bind address, workers and timeouts come from serve/gunicorn_conf.py (SAGEMAKER_* environment variables).
set -euo pipefail
here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
cd "$here"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec gunicorn -c "$here/serve/gunicorn_conf.py" serve.wsgi:app "$@"
