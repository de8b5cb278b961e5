#!/usr/bin/env bash
# Load run over loopback: the real gateway (release build) in front of a fast fake Kiro that
# answers every request with one pre-encoded body of 100 text deltas; 64 connections, streamed
# requests. Measures (1) the gateway's throughput and (2) the latency it adds at a fixed
# 500 requests/s, against calling the fake upstream directly in the same run. No database
# (DATABASE_URL=none): benches/load_tenancy.sh measures the database-backed path.
#
# It also runs examples/proxy_floor.rs, a pass-through proxy on the same crates that does no
# work at all (no auth, no JSON, no decoding): what it reaches is the ceiling any gateway can
# reach on this machine, so the gateway's figures are also given as a share of it.
#
#   bash benches/load.sh            # needs `oha` (cargo install oha) and python3
#
# Everything runs on this machine; nothing leaves loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
RATE=${RATE:-500}
command -v oha >/dev/null || { echo "oha not found: cargo install oha" >&2; exit 1; }

cargo build --release --quiet --bin kiro-gateway --example fake_kiro --example proxy_floor
work=$(mktemp -d)
cleanup() { kill "${fake_pid:-}" "${gw_pid:-}" "${floor_pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); GW=$(free_port); FLOOR=$(free_port)

target/release/examples/fake_kiro --port "$UP" --precomputed 100 >"$work/fake.out" 2>&1 &
fake_pid=$!
for _ in $(seq 100); do grep -q "access token" "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
ACCESS=$(sed -n 's/^access token (valid 1 h): //p' "$work/fake.out")
REFRESH=$(sed -n 's/^refresh token: //p' "$work/fake.out")
ARN="arn:aws:codewhisperer:us-east-1:000000000000:profile/LOADTEST"

DATABASE_URL=none PROXY_API_KEY=load-key REFRESH_TOKEN="$REFRESH" PROFILE_ARN="$ARN" SERVER_PORT="$GW" \
KIRO_API_URL="http://127.0.0.1:$UP" KIRO_DESKTOP_AUTH_URL="http://127.0.0.1:$UP" \
KIRO_OIDC_URL="http://127.0.0.1:$UP" FAKE_REASONING=false LOG_LEVEL=warn \
  target/release/kiro-gateway serve >"$work/gw.out" 2>&1 &
gw_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/health" >/dev/null && break; sleep 0.1; done
target/release/examples/proxy_floor "$FLOOR" "http://127.0.0.1:$UP" "$ACCESS" "$ARN" &
floor_pid=$!

cat >"$work/direct.json" <<JSON
{"conversationState":{"chatTriggerType":"MANUAL","conversationId":"00000000-0000-4000-8000-000000000000","currentMessage":{"userInputMessage":{"content":"hi","modelId":"auto","origin":"AI_EDITOR"}}},"profileArn":"$ARN"}
JSON
echo '{"model":"auto","stream":true,"messages":[{"role":"user","content":"hi"}]}' >"$work/openai.json"

direct=(-m POST -H "Authorization: Bearer $ACCESS" -H "content-type: application/json" -D "$work/direct.json" "http://127.0.0.1:$UP/generateAssistantResponse")
gateway=(-m POST -H "Authorization: Bearer load-key" -H "content-type: application/json" -D "$work/openai.json" "http://127.0.0.1:$GW/v1/chat/completions")
floor=(-m POST -H "content-type: application/json" -D "$work/openai.json" "http://127.0.0.1:$FLOOR/v1/chat/completions")

# Warm up connections and the credential.
oha --no-tui -n 200 -c 8 --output-format quiet "${gateway[@]}" || true
oha --no-tui -n 200 -c 8 --output-format quiet "${floor[@]}" || true

run() { # name, extra oha args..., target args...
  local name=$1; shift
  oha --no-tui -z "$DURATION" -c "$CONNECTIONS" --output-format json "$@" >"$work/$name.json"
}
run direct_max "${direct[@]}"
run gateway_max "${gateway[@]}"
run floor_max "${floor[@]}"
run direct_rate -q "$RATE" "${direct[@]}"
run gateway_rate -q "$RATE" "${gateway[@]}"
run floor_rate -q "$RATE" "${floor[@]}"

python3 - "$work" <<'PY'
import json, sys, os
work = sys.argv[1]
def load(name):
    with open(os.path.join(work, name + ".json")) as f:
        return json.load(f)
def rps(d): return d["summary"]["requestsPerSec"]
def p(d, q): return d["latencyPercentiles"][q] * 1000.0
def ok(d):
    codes = d.get("statusCodeDistribution", {})
    return sum(v for k, v in codes.items() if k.startswith("2")), sum(codes.values())
names = ("direct_max", "gateway_max", "floor_max", "direct_rate", "gateway_rate", "floor_rate")
for name in names:
    d = load(name)
    good, total = ok(d)
    print(f"{name:13s} {rps(d):9.0f} req/s  p50 {p(d,'p50'):7.3f} ms  p99 {p(d,'p99'):7.3f} ms  ok {good}/{total}")
dm, gm, fm, dr, gr, fr = (load(n) for n in names)
print(f"gateway throughput: {rps(gm):.0f} req/s ({rps(gm)/rps(dm):.2f}x of calling the fake directly, "
      f"{rps(gm)/rps(fm):.2f}x of the do-nothing proxy's {rps(fm):.0f})")
print(f"added p99 at {rps(gr):.0f} req/s: {p(gr,'p99') - p(dr,'p99'):.3f} ms "
      f"(the do-nothing proxy adds {p(fr,'p99') - p(dr,'p99'):.3f} ms)")
PY
