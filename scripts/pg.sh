#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 server for the store tests and exports TEST_DATABASE_URL.
#
#   source scripts/pg.sh          # start it; it stops when the sourcing shell exits
#   bash scripts/pg.sh CMD...     # start it, run CMD with TEST_DATABASE_URL set, stop it
#
# The server runs as an unprivileged user (PostgreSQL refuses root; CI runs as root, so the
# user `kgtest` is created when missing), lives in a temporary directory, listens on
# 127.0.0.1 on a free port only, trusts local connections, and trades durability for speed
# (fsync off). If TEST_DATABASE_URL is already set, nothing is started.

kg_pg_main() {
    if [[ -n "${TEST_DATABASE_URL:-}" ]]; then
        echo "pg.sh: using the existing TEST_DATABASE_URL"
        return 0
    fi
    local bin=""
    for dir in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" \
        /usr/lib/postgresql/15/bin /usr/local/bin; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then bin="$dir"; break; fi
    done
    if [[ -z "$bin" ]]; then
        echo "pg.sh: WARNING: initdb/pg_ctl not found; PostgreSQL store tests will be skipped" >&2
        return 0
    fi

    local as=()
    if [[ "$(id -u)" == 0 ]]; then
        if ! id kgtest >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin kgtest
        fi
        as=(runuser -u kgtest --)
    fi

    KG_PG_DIR="$(mktemp -d /tmp/kg-pg.XXXXXX)"
    chmod 0700 "$KG_PG_DIR"
    if [[ ${#as[@]} -gt 0 ]]; then chown kgtest "$KG_PG_DIR"; fi

    local port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

    "${as[@]}" "$bin/initdb" -D "$KG_PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync \
        >"$KG_PG_DIR/initdb.log" 2>&1 || {
        cat "$KG_PG_DIR/initdb.log" >&2
        return 1
    }
    KG_PG_CTL=("${as[@]}" "$bin/pg_ctl" -D "$KG_PG_DIR/data")
    "${KG_PG_CTL[@]}" -l "$KG_PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $KG_PG_DIR -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >/dev/null || {
        cat "$KG_PG_DIR/server.log" >&2
        return 1
    }
    trap kg_pg_stop EXIT
    export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "pg.sh: PostgreSQL running at $TEST_DATABASE_URL (data in $KG_PG_DIR)"
}

kg_pg_stop() {
    if [[ -n "${KG_PG_DIR:-}" && -d "$KG_PG_DIR" ]]; then
        "${KG_PG_CTL[@]}" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$KG_PG_DIR"
        echo "pg.sh: PostgreSQL stopped"
    fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    kg_pg_main
    "$@"
else
    kg_pg_main
fi
