#!/usr/bin/env bash
# What shared rate and concurrency limits cost end to end: the real gateway (release build) in
# front of the fast fake Kiro (100 pre-encoded text deltas per answer), 64 connections, streamed
# requests, all with one API key that has an `rpm_limit` and a `max_concurrency` (both too high
# to refuse anything), on PostgreSQL (a throwaway server from scripts/pg.sh, fsync off). The
# same gateway is run three times on the same database: SHARED_LIMITS=off (counted in memory),
# postgres (one `kiro_limit_admit` call per request) and redis (scripts/redis.sh). After each
# run, `/ready` must still say `shared` with no request that waited out the pool (`busy` 0):
# otherwise some requests were counted locally and the figures would not be the engine's.
#
#   bash benches/load_shared_limits.sh   # needs `wrk` (apt-get install wrk), python3, curl
#   MODES=postgres SHARED_LIMITS_PG_POOL=4 bash benches/load_shared_limits.sh   # one mode, pool 4
#
# Everything runs on this machine; nothing leaves loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
MODES=${MODES:-off postgres redis}
CONNECTIONS=${CONNECTIONS:-64}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet --bin kiro-gateway --example fake_kiro
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=../scripts/pg.sh
source scripts/pg.sh >/dev/null
# shellcheck source=../scripts/redis.sh
source scripts/redis.sh >/dev/null
[[ -n "${TEST_DATABASE_URL:-}" && -n "${TEST_REDIS_URL:-}" ]] ||
  { echo "needs PostgreSQL and Redis (scripts/pg.sh, scripts/redis.sh)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
target/release/examples/fake_kiro --port "$UP" --precomputed 100 >"$work/fake.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "refresh token" "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
REFRESH=$(sed -n 's/^refresh token: //p' "$work/fake.out")
ARN="arn:aws:codewhisperer:us-east-1:000000000000:profile/LOADTEST"
ADMIN=bench-admin-key

# Starts a gateway with SHARED_LIMITS=$1 on the database and waits until it answers; sets
# gw_pid and gw_port.
start_gateway() {
  local mode=$1 port
  port=$(free_port)
  SHARED_LIMITS="$mode" REDIS_URL="$TEST_REDIS_URL" PROFILE_ARN="$ARN" \
  DATABASE_URL="$TEST_DATABASE_URL" ADMIN_API_KEY="$ADMIN" SERVER_PORT="$port" \
  KIRO_GATEWAY_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
  KIRO_API_URL="http://127.0.0.1:$UP" KIRO_DESKTOP_AUTH_URL="http://127.0.0.1:$UP" \
  KIRO_OIDC_URL="http://127.0.0.1:$UP" FAKE_REASONING=false LOG_LEVEL=warn \
    target/release/kiro-gateway serve >"$work/gw-$mode.out" 2>&1 &
  gw_pid=$! gw_port=$port
  pids+=("$gw_pid")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
}

admin() { # port, method, path, body
  curl -sf -X "$2" -H "Authorization: Bearer $ADMIN" -H "content-type: application/json" \
    ${4:+-d "$4"} "http://127.0.0.1:$1$3"
}

# Two accounts, one user with a large quota, and its key with both limits; prints the key.
provision() {
  local port=$1 user_id
  for name in bench-a bench-b; do
    admin "$port" POST /admin/accounts \
      "{\"name\":\"$name\",\"refresh_token\":\"$REFRESH\",\"profile_arn\":\"$ARN\"}" >/dev/null
  done
  user_id=$(admin "$port" POST /admin/users '{"name":"bench user","quota_limit":1000000000000}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["user"]["id"])')
  admin "$port" POST /admin/keys \
    "{\"kind\":\"inference\",\"user_id\":$user_id,\"rpm_limit\":1000000000,\"max_concurrency\":100000}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

# The shared-limits part of /ready, as `state busy` (`off` without an engine); `degraded` as
# the state when the log shows the engine was degraded at any time (a probe may have found it
# back since).
limits_state() {
  local port=$1 mode=$2
  if grep -q "shared limits degraded" "$work/gw-$mode.out"; then
    echo "degraded 0"
    return
  fi
  curl -s "http://127.0.0.1:$port/ready" | python3 -c '
import json, sys
s = json.load(sys.stdin).get("shared_limits")
print("%s %s" % (s["state"], s.get("busy", 0)) if s else "off 0")'
}

# name, port, key: warms up, runs the load, prints requests/s, p50, p99 and the answers.
load() {
  local name=$1 port=$2 key=$3
  cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"model":"auto","stream":true,"messages":[{"role":"user","content":"hi"}]}'
LUA
  local url="http://127.0.0.1:$port/v1/chat/completions"
  wrk -t2 -c8 -d2s -s "$work/post.lua" "$url" >/dev/null
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "$url" >"$work/$name.txt"
  python3 - "$work/$name.txt" "$name" "$(limits_state "$port" "$name")" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(label):
    value, unit = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
bad = int(bad.group(1)) if bad else 0
state, busy = sys.argv[3].split()
print(f"{sys.argv[2]:9s} {rps:7.0f} req/s  p50 {ms('50%'):6.2f} ms  p99 {ms('99%'):6.2f} ms  "
      f"ok {total - bad}/{total}  limits {state}, busy {busy}")
PY
}

key=""
for mode in $MODES; do
  start_gateway "$mode"
  [[ -n "$key" ]] || key=$(provision "$gw_port")
  load "$mode" "$gw_port" "$key"
  kill "$gw_pid"
  wait "$gw_pid" 2>/dev/null || true
done
