#!/usr/bin/env bash
# Starts a throwaway Redis for the shared-limits tests and exports TEST_REDIS_URL (and
# TEST_REDIS_SERVER, the binary, for tests that start and stop a Redis of their own).
#
#   source scripts/redis.sh       # start it; it stops when the sourcing shell exits
#   bash scripts/redis.sh CMD...  # start it, run CMD with TEST_REDIS_URL set, stop it
#
# Installs Debian's `redis-server` when it is missing and we are root (CI). The server lives in
# a temporary directory, listens on 127.0.0.1 on a free port only, and keeps nothing on disk.
# If TEST_REDIS_URL is already set, nothing is started.

kg_redis_main() {
    if [[ -n "${TEST_REDIS_URL:-}" ]]; then
        echo "redis.sh: using the existing TEST_REDIS_URL"
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        echo "redis.sh: installing redis-server"
        (apt-get install -y -q redis-server >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }) || true
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis.sh: WARNING: redis-server not found; Redis tests will be skipped (they fail under CI)" >&2
        return 0
    fi
    KG_REDIS_DIR="$(mktemp -d /tmp/kg-redis.XXXXXX)"
    local port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$KG_REDIS_DIR" --save '' \
        --appendonly no --daemonize yes --pidfile "$KG_REDIS_DIR/redis.pid" \
        --logfile "$KG_REDIS_DIR/redis.log" || {
        cat "$KG_REDIS_DIR/redis.log" >&2
        return 1
    }
    local tries=0
    until [[ -s "$KG_REDIS_DIR/redis.pid" ]] && python3 - "$port" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
    do
        tries=$((tries + 1))
        if [[ $tries -gt 100 ]]; then
            cat "$KG_REDIS_DIR/redis.log" >&2
            return 1
        fi
        sleep 0.1
    done
    # Chain with an EXIT trap set before (scripts/pg.sh sets one).
    local previous
    previous="$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")"
    trap "kg_redis_stop${previous:+; $previous}" EXIT
    export TEST_REDIS_URL="redis://127.0.0.1:$port"
    TEST_REDIS_SERVER="$(command -v redis-server)"
    export TEST_REDIS_SERVER
    echo "redis.sh: Redis running at $TEST_REDIS_URL (in $KG_REDIS_DIR)"
}

kg_redis_stop() {
    if [[ -n "${KG_REDIS_DIR:-}" && -d "$KG_REDIS_DIR" ]]; then
        if [[ -s "$KG_REDIS_DIR/redis.pid" ]]; then
            kill "$(cat "$KG_REDIS_DIR/redis.pid")" 2>/dev/null || true
        fi
        rm -rf "$KG_REDIS_DIR"
        echo "redis.sh: Redis stopped"
    fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    kg_redis_main
    "$@"
else
    kg_redis_main
fi
