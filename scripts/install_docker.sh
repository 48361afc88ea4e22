#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`: install Debian's engine and the build/test helpers when
# missing, start dockerd in the background when it is not running, and wait for it. nginx comes along: serve.sh
# puts it in front of gunicorn when it is on PATH, so the host's serving tests run the same front as the image.
#
#   scripts/install_docker.sh            # engine + debootstrap + docker-registry + docker-compose + nginx
#   DOCKERD_LOG=/tmp/dockerd.log scripts/install_docker.sh
#
# Exits non-zero with the reason (and the tail of dockerd's log) when the engine cannot be started.
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
DOCKERD_WAIT="${DOCKERD_WAIT:-90}"   # seconds to wait for the engine to answer
DOCKERD_PIDFILE="${DOCKERD_PIDFILE:-/var/run/docker.pid}"

log() { printf '[install_docker] %s\n' "$*" >&2; }
die() { printf '[install_docker] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

# 1. Packages: only the ones whose program is missing.
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${missing[*]} by hand"
    # De-duplicate while keeping order.
    mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
    log "installing: ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # No init system here: keep the packages' maintainer scripts from trying to start services.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
        created_policy=1
    fi
    ok=0
    for attempt in 1 2 3; do
        if as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; then
            ok=1; break
        fi
        log "apt-get failed (attempt $attempt); retrying in 5 s"
        sleep 5
    done
    [ "$created_policy" -eq 1 ] && as_root rm -f "$policy"
    [ "$ok" -eq 1 ] || die "apt-get install ${pkgs[*]} failed (is Debian's package mirror reachable?)"
fi

# 2. Engine already up?
if docker info >/dev/null 2>&1; then
    log "Docker engine is running ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
fi

# 3. Start dockerd in the background (no systemd on CI machines).
command -v dockerd >/dev/null 2>&1 || die "dockerd not found after installing docker.io"
pid_alive() { [ -n "${1:-}" ] && [ -e "/proc/$1" ]; }
daemon_pid=""
[ -f "$DOCKERD_PIDFILE" ] && daemon_pid="$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)"
if pid_alive "$daemon_pid"; then
    log "dockerd (pid $daemon_pid) is running but not answering yet; waiting"
else
    # A dead daemon leaves its pid files behind; dockerd refuses to start over them.
    for pidfile in "$DOCKERD_PIDFILE" /run/docker/containerd/containerd.pid; do
        if [ -f "$pidfile" ] && ! pid_alive "$(cat "$pidfile" 2>/dev/null || true)"; then
            as_root rm -f "$pidfile"
        fi
    done
    log "starting dockerd (log: $DOCKERD_LOG)"
    as_root mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid + nohup: the daemon outlives this script and the make/CI step that ran it.
    daemon_pid="$(as_root sh -c "setsid nohup dockerd --pidfile '$DOCKERD_PIDFILE' >>'$DOCKERD_LOG' 2>&1 </dev/null & echo \$!")"
fi

# 4. Wait until it answers (or the daemon dies).
for _ in $(seq 1 "$DOCKERD_WAIT"); do
    if docker info >/dev/null 2>&1; then
        log "Docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        exit 0
    fi
    if ! pid_alive "$daemon_pid" && ! pid_alive "$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)"; then
        log "dockerd exited"; break
    fi
    sleep 1
done

log "dockerd did not come up; last lines of $DOCKERD_LOG:"
tail -n 30 "$DOCKERD_LOG" >&2 || true
docker info 2>&1 | tail -n 5 >&2 || true
die "Docker engine not available (dockerd needs root, overlay2 or vfs storage and iptables; see the log above)"
