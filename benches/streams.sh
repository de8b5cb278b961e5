#!/usr/bin/env bash
# Many slow streams through one gateway process: the release gateway in front of the fake Kiro,
# each answer trickling one delta every MS ms for DELTAS deltas (20 x 1 s by default). For each
# count in COUNTS, a fresh fake and gateway process, then the Rust load client (examples/
# stream_load.rs, one HTTP/1.1 connection per stream, as that many separate clients) holds
# every stream open at once. Reported per count:
#   - the gateway's resident memory per open stream: (RSS with every stream open - RSS idle
#     after a warm-up) / streams, and its descriptors while they are open;
#   - the gateway's CPU share over the run (of one core; the machine's cores are shared with the
#     client and the fake, all on loopback);
#   - time to first delta (p50/p99; includes the ramp, 500 new connections every 50 ms) and the
#     gap between deltas of one stream (p50/p99/max), as the client saw them; "steady" gaps are
#     those after every stream had started (holding N streams, without the ramp's accepts);
#   - the delay each delta took from the fake to the client (the fake stamps each delta with the
#     wall clock when it writes it; p50/p99, all and steady): what the gateway, loopback and the
#     client's lag add, without the fake's own timer slack that the gaps include;
#   - the client's own CPU share, so a client falling behind shows.
#
#   bash benches/streams.sh                         # COUNTS="100 1000 10000"
#   COUNTS=10000 bash benches/streams.sh            # one count
#   KIRO_HTTP2=never COUNTS=1000 bash benches/streams.sh   # HTTP/1.1 to the fake, for comparison
#   SIGTERM=1 COUNTS=10000 bash benches/streams.sh  # also: SIGTERM mid-stream, then count the
#                                                   # usage rows in SQLite (one per stream)
#   GATEWAY=/path/to/kiro-gateway bash benches/streams.sh  # another build (e.g. one made with
#                                                   # --features system-allocator)
#
# KIRO_HTTP2=always (the default here) makes the gateway speak h2c to the fake, 100 answers per
# connection: an open stream holds one descriptor (its client) and a hundredth of an upstream
# connection, so 10,000 streams fit an open-file limit of 20,000. With KIRO_HTTP2=never each
# stream holds two, and the largest count is (limit - 256) / 2.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-"100 1000 10000"}
DELTAS=${DELTAS:-20}
MS=${MS:-1000}
HTTP2=${KIRO_HTTP2:-always}
SIGTERM=${SIGTERM:-0}
GATEWAY=${GATEWAY:-target/release/kiro-gateway}
ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet --bin kiro-gateway --example fake_kiro --example stream_load
work=$(mktemp -d)
cleanup() { kill "${fake_pid:-}" "${gw_pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$gw_pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$gw_pid/stat"; }
fds() { ls "/proc/$gw_pid/fd" | wc -l; }
HZ=$(getconf CLK_TCK)
ARN="arn:aws:codewhisperer:us-east-1:000000000000:profile/STREAMS"
load() { target/release/examples/stream_load 127.0.0.1 "$GW" streams-key "$@"; }

start_processes() {
  UP=$(free_port); GW=$(free_port)
  target/release/examples/fake_kiro --port "$UP" >"$work/fake.out" 2>&1 &
  fake_pid=$!
  for _ in $(seq 100); do grep -q "refresh token" "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
  REFRESH=$(sed -n 's/^refresh token: //p' "$work/fake.out")
  database=none
  if [ "$SIGTERM" = 1 ]; then
    rm -f "$work"/usage.db*
    database="sqlite://$work/usage.db"
  fi
  DATABASE_URL="$database" KIRO_GATEWAY_KEY_FILE="$work/secret.key" PROXY_API_KEY=streams-key \
  REFRESH_TOKEN="$REFRESH" PROFILE_ARN="$ARN" SERVER_PORT="$GW" KIRO_HTTP2="$HTTP2" \
  KIRO_API_URL="http://127.0.0.1:$UP" KIRO_DESKTOP_AUTH_URL="http://127.0.0.1:$UP" \
  KIRO_OIDC_URL="http://127.0.0.1:$UP" FAKE_REASONING=false LOG_LEVEL=warn FIRST_TOKEN_TIMEOUT=60 \
  SHUTDOWN_TIMEOUT=5 MAX_REQUEST_HEAD_BYTES="${MAX_REQUEST_HEAD_BYTES:-8192}" \
  "$GATEWAY" serve >"$work/gw.out" 2>&1 &
  gw_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/health" >/dev/null && break; sleep 0.1; done
  # Warm the credential and the upstream connection, then let the allocator settle.
  load 10 2 10 >/dev/null
  sleep 1
}

stop_processes() {
  kill "$gw_pid" "$fake_pid" 2>/dev/null || true
  wait "$gw_pid" "$fake_pid" 2>/dev/null || true
  gw_pid=; fake_pid=
}

echo "$GATEWAY, KIRO_HTTP2=$HTTP2, MAX_REQUEST_HEAD_BYTES=${MAX_REQUEST_HEAD_BYTES:-8192}, $DELTAS deltas $MS ms apart, $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-7s %-9s %-8s %-8s %-10s %-7s %-7s %-7s %-12s %-12s %-10s %-10s %-10s %-13s %-13s %-10s %-10s %-10s %-10s %s\n' streams completed "idle MiB" "open MiB" "KiB/stream" fds "gw cpu%" "cl cpu%" "ttfb p50 ms" "ttfb p99 ms" "gap p50" "gap p99" "gap max" "steady p99" "steady max" "delay p50" "delay p99" "st.dly p50" "st.dly p99" errors
for n in $COUNTS; do
  start_processes
  idle=$(rss_kib)
  ticks0=$(cpu_ticks); t0=$(date +%s.%N)
  load "$n" "$DELTAS" "$MS" >"$work/client.out" &
  client_pid=$!
  until grep -q '^open ' "$work/client.out" 2>/dev/null; do sleep 0.2; done
  opened=$(sed -n 's/^open //p' "$work/client.out")
  sleep 2
  busy=$(rss_kib); open_fds=$(fds)
  ticks1=$(cpu_ticks); t1=$(date +%s.%N)
  if [ "$SIGTERM" = 1 ]; then
    # Mid-stream: every stream has started and none has ended.
    kill -TERM "$gw_pid"
    wait "$gw_pid" || echo "gateway exit status $?"
    gw_pid=
  fi
  wait "$client_pid" || true
  result=$(grep '^{' "$work/client.out")
  if [ "$SIGTERM" != 1 ]; then ticks1=$(cpu_ticks); t1=$(date +%s.%N); fi
  python3 - "$n" "$opened" "$idle" "$busy" "$open_fds" "$ticks0" "$ticks1" "$t0" "$t1" "$HZ" "$result" <<'PY'
import json, sys
n, opened, idle, busy, fds, k0, k1, t0, t1, hz, result = sys.argv[1:]
r = json.loads(result)
per = (int(busy) - int(idle)) / max(int(opened), 1)
cpu = (int(k1) - int(k0)) / int(hz) / (float(t1) - float(t0)) * 100
print(f"{n:<7} {r['completed']:<9} {int(idle)/1024:<8.1f} {int(busy)/1024:<8.1f} {per:<10.1f} {fds:<7} {cpu:<7.1f} {r['client_cpu_pct']:<7} "
      f"{r['ttfb_p50_ms']!s:<12} {r['ttfb_p99_ms']!s:<12} {r['gap_p50_ms']!s:<10} {r['gap_p99_ms']!s:<10} {r['gap_max_ms']!s:<10} "
      f"{r['steady_gap_p99_ms']!s:<13} {r['steady_gap_max_ms']!s:<13} {r['delay_p50_ms']!s:<10} {r['delay_p99_ms']!s:<10} "
      f"{r['steady_delay_p50_ms']!s:<10} {r['steady_delay_p99_ms']!s:<10} {r['errors']} {r['first_errors']}")
PY
  if [ "$SIGTERM" = 1 ]; then
    python3 - "$work/usage.db" "$opened" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows, requests = db.execute("SELECT count(*), count(DISTINCT request_id) FROM usage_records").fetchone()
print(f"  SIGTERM with {sys.argv[2]} streams open: {rows} usage rows for {requests} requests "
      f"(10 warm-up requests included)")
PY
  fi
  stop_processes
done
