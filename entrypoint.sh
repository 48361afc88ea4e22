#!/usr/bin/env bash
# The image's ENTRYPOINT: runs the command it is given, and says what to pass when it is given none or an
# unknown one. SageMaker runs `IMAGE train` for training jobs and `IMAGE serve` for endpoints; both are
# programs on PATH, exec'd so that they are PID 1 and get SIGTERM. Any other program in the image runs too
# (`docker run IMAGE sh`).
#
# With no command (`docker run IMAGE`, or SageMaker SDK 3.x's local-mode ModelTrainer, which passes none):
#   - /opt/ml/input/config holds a training job's configuration -> train
#   - else /opt/ml/model holds a model                           -> serve
#   - else                                                       -> one line saying what to pass, exit 2
# Training comes first: a training job is the only thing that writes input/config, and a model left in
# /opt/ml/model by an earlier local job must not turn a training job into a server that never exits.
set -euo pipefail

base="${SAGEMAKER_BASE_DIR:-/opt/ml}"
contract="SageMaker runs 'IMAGE train' for training jobs and 'IMAGE serve' for endpoints"

log() { printf '[%s %s %s] %s\n' "$(date -u '+%m/%d/%Y %H:%M:%S')" "$1" "$$" "$2"; }

if [ "$#" -gt 0 ]; then
    if command -v -- "$1" >/dev/null 2>&1; then
        exec "$@"
    fi
    log ERROR "Unknown command '$1' (not a program in the image): $contract; pass one of them." >&2
    exit 2
fi

config="$base/input/config"
if [ -f "$config/hyperparameters.json" ] || [ -f "$config/inputdataconfig.json" ]; then
    log INFO "No command given; running 'train' because $config holds a training job's configuration ($contract)."
    exec train
fi
if [ -n "$(ls -A "$base/model" 2>/dev/null)" ]; then
    log INFO "No command given; running 'serve' because $base/model holds a model ($contract)."
    exec serve
fi
log ERROR "No command given and nothing to do: no training configuration in $config and no model in $base/model. \
$contract; pass one of them: docker run -v DIR:/opt/ml IMAGE train (DIR/input/config, DIR/input/data) or \
docker run -p 8080:8080 -v MODEL_DIR:/opt/ml/model IMAGE serve." >&2
exit 2
