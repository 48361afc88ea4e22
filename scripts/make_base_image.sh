#!/usr/bin/env bash
# Build a Debian bookworm + python3 base image from Debian's packages, for machines that cannot pull
# python:3.11-slim-bookworm from a container registry (see docs/image.md).
#
#   scripts/make_base_image.sh [TAG]        # default TAG: fm-wals-base:bookworm
#   FORCE=1 scripts/make_base_image.sh      # rebuild even when TAG exists
#   MIRROR=http://deb.debian.org/debian     # Debian mirror used by debootstrap
#
# The host's CA bundle is copied into the image so that pip inside `docker build` trusts the same
# (possibly TLS-intercepting) proxy the host trusts.
set -euo pipefail

TAG="${1:-${BASE_TAG:-fm-wals-base:bookworm}}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
PACKAGES="python3,python3-venv,python3-pip,ca-certificates"

log() { printf '[make_base_image] %s\n' "$*" >&2; }
die() { printf '[make_base_image] ERROR: %s\n' "$*" >&2; exit 1; }

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG exists; skipping (FORCE=1 rebuilds)"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || die "debootstrap missing (scripts/install_docker.sh installs it)"
PATH="$PATH:/usr/sbin:/sbin"

rootfs="$(mktemp -d /var/tmp/fm-wals-rootfs.XXXXXX)"
cleanup() { rm -rf --one-file-system "$rootfs"; }
trap cleanup EXIT

log "debootstrap $SUITE minbase + $PACKAGES into $rootfs"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
rm -f "$rootfs.log"

# Trust what the host trusts (the proxy's certificate on this workplace's machines).
if [ -s "$HOST_CA" ]; then
    cp "$HOST_CA" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi

# Slim down: package caches, lists, docs, man pages, bytecode caches.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
       "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
       "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
       "$rootfs"/tmp/* "$rootfs"/root/.cache
find "$rootfs/usr/lib" -name __pycache__ -type d -prune -exec rm -rf {} +

log "importing as $TAG"
tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap $SUITE minbase + $PACKAGES" \
    - "$TAG" >/dev/null
log "done: $TAG ($(docker image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
