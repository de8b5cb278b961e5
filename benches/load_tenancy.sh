#!/usr/bin/env bash
# Load run of the pool and usage path on each storage backend: the real gateway (release build)
# in front of the fast fake Kiro (100 pre-encoded text deltas per answer), 64 connections,
# streamed requests, authenticated with a database user's API key (key cache, quota check, the
# database-backed account pool of two accounts, one usage record per request through the batched
# writer). Runs without a database (PROXY_API_KEY), on SQLite, and on PostgreSQL (a throwaway
# server from scripts/pg.sh, fsync off), then checks that every answered request left exactly one
# usage row.
#
#   bash benches/load_tenancy.sh        # needs `oha` (cargo install oha), python3, curl
#
# Everything runs on this machine; nothing leaves loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
command -v oha >/dev/null || { echo "oha not found: cargo install oha" >&2; exit 1; }

cargo build --release --quiet --bin kiro-gateway --example fake_kiro
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
target/release/examples/fake_kiro --port "$UP" --precomputed 100 >"$work/fake.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "refresh token" "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
REFRESH=$(sed -n 's/^refresh token: //p' "$work/fake.out")
ARN="arn:aws:codewhisperer:us-east-1:000000000000:profile/LOADTEST"
ADMIN=bench-admin-key
echo '{"model":"auto","stream":true,"messages":[{"role":"user","content":"hi"}]}' >"$work/openai.json"

# Starts a gateway on DATABASE_URL=$1; prints its port. Without a database the account is the
# environment's refresh token; with one, the accounts are added through the admin API.
start_gateway() {
  local url=$1 port refresh=""
  port=$(free_port)
  [[ "$url" == none ]] && refresh=$REFRESH
  REFRESH_TOKEN="$refresh" PROFILE_ARN="$ARN" \
  DATABASE_URL="$url" ADMIN_API_KEY="$ADMIN" PROXY_API_KEY=load-key SERVER_PORT="$port" \
  KIRO_GATEWAY_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
  KIRO_API_URL="http://127.0.0.1:$UP" KIRO_DESKTOP_AUTH_URL="http://127.0.0.1:$UP" \
  KIRO_OIDC_URL="http://127.0.0.1:$UP" FAKE_REASONING=false LOG_LEVEL=warn \
    target/release/kiro-gateway serve >"$work/gw-$port.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  echo "$port"
}

admin() { # port, method, path, body
  curl -sf -X "$2" -H "Authorization: Bearer $ADMIN" -H "content-type: application/json" \
    ${4:+-d "$4"} "http://127.0.0.1:$1$3"
}

# Two accounts and one user with a large quota; prints the user's API key.
provision() {
  local port=$1 user_id
  for name in bench-a bench-b; do
    admin "$port" POST /admin/accounts \
      "{\"name\":\"$name\",\"refresh_token\":\"$REFRESH\",\"profile_arn\":\"$ARN\"}" >/dev/null
  done
  user_id=$(admin "$port" POST /admin/users '{"name":"bench user","quota_limit":1000000000000}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["user"]["id"])')
  admin "$port" POST /admin/keys "{\"kind\":\"inference\",\"user_id\":$user_id}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

# name, port, key: runs the load, prints a summary line and the answered count.
load() {
  local name=$1 port=$2 key=$3
  oha --no-tui -n 200 -c 8 --output-format quiet -m POST -H "Authorization: Bearer $key" \
    -H "content-type: application/json" -D "$work/openai.json" \
    "http://127.0.0.1:$port/v1/chat/completions" || true
  oha --no-tui -z "$DURATION" -c "$CONNECTIONS" --output-format json -m POST \
    -H "Authorization: Bearer $key" -H "content-type: application/json" -D "$work/openai.json" \
    "http://127.0.0.1:$port/v1/chat/completions" >"$work/$name.json"
  python3 - "$work/$name.json" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
codes = d.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
p = d["latencyPercentiles"]
print(f"{sys.argv[2]:9s} {d['summary']['requestsPerSec']:7.0f} req/s  p50 {p['p50']*1e3:6.2f} ms  "
      f"p99 {p['p99']*1e3:6.2f} ms  ok {ok}/{sum(codes.values())}")
PY
}

# name, port: waits for the usage writer, then compares the stored rows with the answers. Every
# answered request must have its "ok" row; the requests still in flight when the load tool
# stopped (at most one per connection) have rows too: "ok" when the upstream had finished, else
# "client_abort".
check_rows() {
  local name=$1 port=$2 ok rows
  ok=$(($(answered "$work/$name.json") + 200))
  for _ in $(seq 50); do
    rows=$(admin "$port" GET "/admin/usage?group_by=user" |
      python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(sum(r["successes"] for r in d), sum(r["requests"] for r in d))')
    [[ "${rows% *}" -ge "$ok" ]] && break
    sleep 0.2
  done
  local ok_rows=${rows% *} all_rows=${rows#* } verdict="as expected"
  if (( ok_rows < ok || all_rows - ok > CONNECTIONS )); then verdict="MISMATCH"; fi
  echo "          usage rows: $all_rows ($ok_rows ok) for $ok answered requests (warm-up" \
    "included); at most $CONNECTIONS more were in flight when the load stopped: $verdict"
}

answered() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(v for k, v in d.get("statusCodeDistribution",{}).items() if k.startswith("2")))' "$1"; }

port=$(start_gateway none)
load no-db "$port" load-key

port=$(start_gateway "sqlite://$work/bench.db")
key=$(provision "$port")
load sqlite "$port" "$key"
check_rows sqlite "$port"

# shellcheck source=../scripts/pg.sh
source scripts/pg.sh >/dev/null
if [[ -n "${TEST_DATABASE_URL:-}" ]]; then
  port=$(start_gateway "$TEST_DATABASE_URL")
  key=$(provision "$port")
  load postgres "$port" "$key"
  check_rows postgres "$port"
else
  echo "postgres  skipped: no PostgreSQL binaries"
fi
