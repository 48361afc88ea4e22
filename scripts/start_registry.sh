#!/usr/bin/env bash
# Start a throw-away Docker registry (Debian's docker-registry, i.e. distribution v2) on loopback, in the
# background, and wait until it answers. dockerd allows 127.0.0.0/8 registries without TLS by default.
#
#   scripts/start_registry.sh PORT DIR     # storage and config under DIR; pid in DIR/registry.pid
#   kill "$(cat DIR/registry.pid)"         # stop it
set -euo pipefail

port="${1:?usage: start_registry.sh PORT DIR}"
dir="${2:?usage: start_registry.sh PORT DIR}"
bin="$(command -v docker-registry || true)"
[ -n "$bin" ] || { echo "[start_registry] docker-registry not installed (scripts/install_docker.sh)" >&2; exit 1; }

mkdir -p "$dir/storage"
cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF

"$bin" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
echo $! >"$dir/registry.pid"

for _ in $(seq 1 50); do
    if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
        echo "[start_registry] registry on 127.0.0.1:$port (pid $(cat "$dir/registry.pid"))" >&2
        exit 0
    fi
    kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null || break
    sleep 0.2
done
echo "[start_registry] registry did not start; log:" >&2
cat "$dir/registry.log" >&2 || true
exit 1
