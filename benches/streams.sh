#!/usr/bin/env bash
# Many slow streams through one gateway process: the release gateway (no database) in front of
# the fake Kiro, each answer trickling one delta every MS ms for DELTAS deltas (30 x 1 s by
# default). For each count in COUNTS it reports the gateway's resident memory per open stream
# (RSS with every stream open minus RSS idle, divided by the streams), its CPU share while they
# run, time to first delta and the gap between deltas (p50/p99) as the client saw them.
#
#   bash benches/streams.sh                       # COUNTS="100 1000 9000"
#   COUNTS=9000 bash benches/streams.sh           # one count on a fresh process
#   COUNTS="100 1000" DELTAS=20 MS=1000 bash benches/streams.sh
#
# Each open stream holds two descriptors in the gateway (client and upstream connection), so
# the largest count is bounded by the open-file hard limit: (limit - 256) / 2 (MAX_OPEN_STREAMS).
# Everything runs on this machine over loopback; the client is Python asyncio (benches/
# stream_client.py), so at the largest counts its own scheduling shows in the gaps and in the
# time to first delta (which includes the ramp: streams are opened 250 at a time). Memory a
# count leaves behind stays in the process for the next count: run the largest count alone
# (COUNTS=9000) for its own figure.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-"100 1000 9000"}
DELTAS=${DELTAS:-30}
MS=${MS:-1000}
ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet --bin kiro-gateway --example fake_kiro
work=$(mktemp -d)
cleanup() { kill "${fake_pid:-}" "${gw_pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); GW=$(free_port)

target/release/examples/fake_kiro --port "$UP" >"$work/fake.out" 2>&1 &
fake_pid=$!
for _ in $(seq 100); do grep -q "refresh token" "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
REFRESH=$(sed -n 's/^refresh token: //p' "$work/fake.out")
ARN="arn:aws:codewhisperer:us-east-1:000000000000:profile/STREAMS"

DATABASE_URL=none PROXY_API_KEY=streams-key REFRESH_TOKEN="$REFRESH" PROFILE_ARN="$ARN" SERVER_PORT="$GW" \
KIRO_API_URL="http://127.0.0.1:$UP" KIRO_DESKTOP_AUTH_URL="http://127.0.0.1:$UP" \
KIRO_OIDC_URL="http://127.0.0.1:$UP" FAKE_REASONING=false LOG_LEVEL=warn FIRST_TOKEN_TIMEOUT=60 \
  target/release/kiro-gateway serve >"$work/gw.out" 2>&1 &
gw_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/health" >/dev/null && break; sleep 0.1; done
# Warm the credential and the upstream connection pool.
python3 benches/stream_client.py 127.0.0.1 "$GW" streams-key 10 2 10 >/dev/null

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$gw_pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$gw_pid/stat"; }
HZ=$(getconf CLK_TCK)

printf '%-7s %-10s %-10s %-10s %-12s %-9s %-13s %-13s %-11s %-11s %s\n' streams completed "idle MiB" "open MiB" "KiB/stream" "cpu %" "ttfb p50 ms" "ttfb p99 ms" "gap p50 ms" "gap p99 ms" errors
for n in $COUNTS; do
  idle=$(rss_kib)
  ticks0=$(cpu_ticks); t0=$(date +%s.%N)
  coproc CLIENT { python3 benches/stream_client.py 127.0.0.1 "$GW" streams-key "$n" "$DELTAS" "$MS"; }
  read -r _ opened <&"${CLIENT[0]}"
  sleep 2
  busy=$(rss_kib)
  read -r result <&"${CLIENT[0]}"
  wait "$CLIENT_PID" || true
  ticks1=$(cpu_ticks); t1=$(date +%s.%N)
  python3 - "$n" "$opened" "$idle" "$busy" "$ticks0" "$ticks1" "$t0" "$t1" "$HZ" "$result" <<'PY'
import json, sys
n, opened, idle, busy, k0, k1, t0, t1, hz, result = sys.argv[1:]
r = json.loads(result)
per = (int(busy) - int(idle)) / max(int(opened), 1)
cpu = (int(k1) - int(k0)) / int(hz) / (float(t1) - float(t0)) * 100
print(f"{n:<7} {r['completed']:<10} {int(idle)/1024:<10.1f} {int(busy)/1024:<10.1f} {per:<12.1f} {cpu:<9.1f} {r['ttfb_p50_ms']!s:<13} {r['ttfb_p99_ms']!s:<13} "
      f"{r['gap_p50_ms']!s:<11} {r['gap_p99_ms']!s:<11} {r['errors']} {r['first_errors']}")
PY
  sleep 2
done
