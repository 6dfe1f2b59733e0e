#!/usr/bin/env bash
# `resumable-stream serve` measured against the authors' Durable Streams server
# (npm @durable-streams/server 0.3.7, its in-memory store; pinned by
# tests/durable-streams-bench/package-lock.json, installed outside the tree in
# ~/.cache/resumable-stream/durable-streams-bench), side by side in one run: the
# reference, serve (release build) on a private redis-server, and serve in memory, all
# on 127.0.0.1. REPS repetitions; in each, every case runs on the three servers in
# turn, the order rotated from one repetition to the next:
#
#   append-1    wrk, 16 connections (16 threads), POSTs of 64-byte bodies to ONE stream
#   append-16   the same on 16 distinct streams (one per connection)
#   catchup     a 10 MiB stream (1 KiB appends) read from offset -1 to up-to-date,
#               CATCHUP_READS times (tests/durable-streams-bench/client.mjs)
#   sse         SSE tail latency: SSE_SAMPLES appends of 64 bytes one at a time, each
#               timed from its POST until its SSE event arrives (after 20 unrecorded)
#
# Every case also records the CPU seconds the server (and redis-server) used meanwhile.
# Writes docs/durable-streams/bench/raw.jsonl (one JSON line per measurement, the first
# one the setup) and raw.txt (everything printed), then table.md from raw.jsonl alone
# (scripts/durable-streams-bench-report.py). Every load is bounded: wrk -d DURATION,
# each client and wrk under `timeout`.
#
#   scripts/durable-streams-bench.sh        (REPS=3 DURATION=10 SSE_SAMPLES=500 CATCHUP_READS=5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
source scripts/lib/harness.sh
harness_init durable-streams-bench

REPS="${REPS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS=16
CATCHUP_BYTES=$((10 * 1024 * 1024))
CATCHUP_CHUNK=1024
CATCHUP_READS="${CATCHUP_READS:-5}"
SSE_SAMPLES="${SSE_SAMPLES:-500}"
BENCH_DIR="${DURABLE_STREAMS_BENCH_DIR:-$HOME/.cache/resumable-stream/durable-streams-bench}"
OUT="$ROOT/docs/durable-streams/bench"
SERVERS=(reference serve-redis serve-memory)

step "the reference server, pinned, in $BENCH_DIR"
node_packages "$BENCH_DIR" "$ROOT/tests/durable-streams-bench" "@durable-streams/server"
cp "$ROOT"/tests/durable-streams-bench/{reference-server.mjs,client.mjs,append.lua} "$BENCH_DIR/"
command -v wrk >/dev/null || apt_install wrk
command -v redis-server >/dev/null || apt_install redis-server

step "cargo build --release -p resumable-stream-cli"
cargo build --release -q -p resumable-stream-cli
BIN="$ROOT/target/release/resumable-stream"
trap - ERR

mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"
: >"$RAW"
exec > >(tee "$OUT/raw.txt") 2>&1

# wait_http NAME PORT PID: until the server answers on PORT (10 s at most).
wait_http() {
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$2/" && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "$1 did not start:"; cat "$WORK/$1.log"; exit 1
}
declare -A PORT PID
start() {
  local name="$1"; shift
  PORT[$name]="$(free_port)"
  "$@" "${PORT[$name]}" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  PIDS+=("$!")
  wait_http "$name" "${PORT[$name]}" "${PID[$name]}"
}

start_redis
REDIS_PORT="${REDIS_URL_PRIVATE##*:}"
REDIS_PID="$(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | sed -n 's/^process_id://p')"
start reference node "$BENCH_DIR/reference-server.mjs"
start serve-redis bash -c 'exec "$0" serve --redis "$1" --listen "127.0.0.1:$2"' "$BIN" "$REDIS_URL_PRIVATE"
start serve-memory bash -c 'exec "$0" serve --listen "127.0.0.1:$1"' "$BIN"

TICK="$(getconf CLK_TCK)"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cpu_json NAME BEFORE_SERVER BEFORE_REDIS: the CPU seconds used since.
cpu_json() {
  local server redis=""
  server="$(awk -v a="$2" -v b="$(cpu "${PID[$1]}")" -v t="$TICK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  [ "$1" = serve-redis ] && redis="$(awk -v a="$3" -v b="$(cpu "$REDIS_PID")" -v t="$TICK" 'BEGIN {printf ",\"redis_cpu_s\":%.2f", (b - a) / t}')"
  printf '"server_cpu_s":%s%s' "$server" "$redis"
}
record() { # REP SERVER CASE RESULT_JSON CPU_JSON
  printf '{"rep":%s,"server":"%s","case":"%s",%s,"result":%s}\n' "$1" "$2" "$3" "$5" "$4" | tee -a "$RAW"
}
put() { # PORT ID
  local status
  status="$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: text/plain' \
    "http://127.0.0.1:$1/v1/stream/$2")"
  [ "$status" = 201 ] || { echo "PUT $2 on port $1: $status"; exit 1; }
}

version() { "$@" 2>&1 | head -1 | tr -d '"\\'; }
printf '{"setup":{"date":"%s","commit":"%s","cpu":"%s","cores":%s,"node":"%s","wrk":"%s","redis":"%s","reference":"@durable-streams/server 0.3.7 (in memory)","reps":%s,"duration_s":%s,"connections":%s,"body_bytes":64,"catchup_bytes":%s,"catchup_chunk":%s,"catchup_reads":%s,"sse_samples":%s}}\n' \
  "$(date -u +%FT%TZ)" "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src adapters/durable-streams adapters/cli || echo '+changes')" \
  "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" "$(nproc)" "$(node --version)" \
  "$(version wrk -v | sed 's/ Copyright.*//')" "$(version redis-server --version | sed -E 's/.* v=([^ ]+).*/redis-server \1/')" "$REPS" "$DURATION" "$CONNECTIONS" \
  "$CATCHUP_BYTES" "$CATCHUP_CHUNK" "$CATCHUP_READS" "$SSE_SAMPLES" | tee -a "$RAW"

wrk_run() { # PORT STEM STREAMS SECONDS
  timeout $(($4 + 30)) wrk -t"$CONNECTIONS" -c"$CONNECTIONS" -d"$4s" --timeout 5s \
    -s "$BENCH_DIR/append.lua" "http://127.0.0.1:$1" -- "$2" "$3"
}

for rep in $(seq 1 "$REPS"); do
  # Rotate the servers' order: each goes first, second and third once in three reps.
  shift_by=$(((rep - 1) % ${#SERVERS[@]}))
  order=("${SERVERS[@]:$shift_by}" "${SERVERS[@]:0:$shift_by}")
  step "repetition $rep of $REPS: ${order[*]}"
  for case in append-1 append-16 catchup sse; do
    for server in "${order[@]}"; do
      port="${PORT[$server]}"
      case "$case" in
        append-1 | append-16)
          streams="${case#append-}"
          stem="r$rep-$case-"
          for n in $(seq 0 $((streams - 1))); do put "$port" "$stem$n"; done
          wrk_run "$port" "$stem" "$streams" "$WARMUP" >/dev/null
          s0="$(cpu "${PID[$server]}")"; r0="$(cpu "$REDIS_PID")"
          echo "--- $server $case (wrk -t$CONNECTIONS -c$CONNECTIONS -d${DURATION}s, $streams stream(s))"
          wrk_run "$port" "$stem" "$streams" "$DURATION" >"$WORK/wrk.txt"
          grep -v '^RESULT ' "$WORK/wrk.txt"
          result="$(sed -n 's/^RESULT //p' "$WORK/wrk.txt")"
          [ -n "$result" ] || { echo "wrk gave no result"; exit 1; }
          ;;
        catchup)
          id="r$rep-catchup"
          echo "--- $server $case"
          timeout 120 node "$BENCH_DIR/client.mjs" fill "http://127.0.0.1:$port/v1/stream" "$id" "$CATCHUP_BYTES" "$CATCHUP_CHUNK"
          s0="$(cpu "${PID[$server]}")"; r0="$(cpu "$REDIS_PID")"
          result="$(timeout 120 node "$BENCH_DIR/client.mjs" catchup "http://127.0.0.1:$port/v1/stream" "$id" "$CATCHUP_BYTES" "$CATCHUP_READS")"
          ;;
        sse)
          echo "--- $server $case"
          s0="$(cpu "${PID[$server]}")"; r0="$(cpu "$REDIS_PID")"
          result="$(timeout 120 node "$BENCH_DIR/client.mjs" sse "http://127.0.0.1:$port/v1/stream" "r$rep-sse" "$SSE_SAMPLES")"
          ;;
      esac
      record "$rep" "$server" "$case" "$result" "$(cpu_json "$server" "$s0" "$r0")"
    done
  done
done

step "the table (scripts/durable-streams-bench-report.py)"
python3 "$ROOT/scripts/durable-streams-bench-report.py" "$RAW" >"$OUT/table.md"
cat "$OUT/table.md"
