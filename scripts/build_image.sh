#!/usr/bin/env bash
# Build the project image (make image).
#
#   scripts/build_image.sh                          # IMAGE=fm-wals:latest
#   IMAGE=my/fm:1 BASE_IMAGE=python:3.11-slim-bookworm scripts/build_image.sh
#
# Base image: $BASE_IMAGE when set; else the public python:3.11-slim-bookworm when it is present or can be
# pulled; else a local Debian bookworm base made with debootstrap (scripts/make_base_image.sh), for
# machines that reach no container registry.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-fm-wals:latest}"
PUBLIC_BASE_IMAGE="${PUBLIC_BASE_IMAGE:-python:3.11-slim-bookworm}"
LOCAL_BASE_IMAGE="${LOCAL_BASE_IMAGE:-fm-wals-base:bookworm}"
PULL_TIMEOUT="${PULL_TIMEOUT:-120}"

log() { printf '[build_image] %s\n' "$*" >&2; }

if [ -z "${BASE_IMAGE:-}" ]; then
    if docker image inspect "$PUBLIC_BASE_IMAGE" >/dev/null 2>&1 \
        || timeout "$PULL_TIMEOUT" docker pull -q "$PUBLIC_BASE_IMAGE" >/dev/null 2>&1; then
        BASE_IMAGE="$PUBLIC_BASE_IMAGE"
    else
        log "cannot pull $PUBLIC_BASE_IMAGE; using the local debootstrap base $LOCAL_BASE_IMAGE"
        "$repo/scripts/make_base_image.sh" "$LOCAL_BASE_IMAGE"
        BASE_IMAGE="$LOCAL_BASE_IMAGE"
    fi
fi

# Debian's docker.io has no buildx plugin, and a recent CLI without it refuses BuildKit builds:
# use the classic builder then (the Dockerfile needs nothing BuildKit-specific).
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

log "building $IMAGE from $BASE_IMAGE"
started=$(date +%s)
# --network host: RUN steps reach the package index through the host's network (and proxy).
docker build --network host --force-rm --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" "$repo"
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
log "built $IMAGE in $(( $(date +%s) - started )) s, $(( size / 1000000 )) MB uncompressed"
