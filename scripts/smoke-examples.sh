#!/usr/bin/env bash
# Runs each example for real on the in-memory backend: the hand-driven poll loop to
# its end, and both SSE servers (tokio + axum, blocking + tiny_http) through one whole
# stream, a resume and a state query, on loopback ports of their own.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p resumable-stream-tokio --example demo
cargo build -q -p resumable-stream-blocking --example blocking_server --example poll_loop
BIN="${CARGO_TARGET_DIR:-target}/debug/examples"

echo "poll_loop --memory"
timeout 30 "$BIN/poll_loop" --memory

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

check_server() {
  local name="$1" port pid
  port="$(free_port)"
  env -u REDIS_URL -u KV_URL PORT="$port" "$BIN/$name" >"/tmp/smoke-$name.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  local base="http://127.0.0.1:$port"
  # Captured first: `grep -q` closing a pipe early would fail curl under pipefail.
  local page
  page="$(curl -fsS "$base/")"
  grep -q EventSource <<<"$page"
  # A whole stream, and a resume of it from a second client while it runs.
  curl -fsSN --max-time 30 "$base/api/stream/smoke" >"/tmp/smoke-$name.full" &
  local full=$!
  sleep 1
  curl -fsSN --max-time 30 "$base/api/stream/smoke?skip=10" >"/tmp/smoke-$name.resumed"
  wait "$full"
  grep -q '"role":"producer"' "/tmp/smoke-$name.full"
  grep -q '"role":"resumer"' "/tmp/smoke-$name.resumed"
  grep -q '^event: end' "/tmp/smoke-$name.full"
  grep -q '^event: end' "/tmp/smoke-$name.resumed"
  python3 - "/tmp/smoke-$name.full" "/tmp/smoke-$name.resumed" <<'PY'
import json, sys
def text(path):
    out = []
    for block in open(path, encoding="utf-8").read().split("\n\n"):
        lines = block.split("\n")
        if any(l.startswith("event:") for l in lines):
            continue
        out += [json.loads(l[5:].strip()) for l in lines if l.startswith("data:")]
    return "".join(out)
full, resumed = text(sys.argv[1]), text(sys.argv[2])
units = full.encode("utf-16-le")
assert resumed == units[20:].decode("utf-16-le"), (full, resumed)
print(f"  {len(full)} characters streamed; the resume from UTF-16 offset 10 matches")
PY
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/api/stream/smoke")" = 422 ]
  local state
  state="$(curl -fsS "$base/api/state/smoke")"
  grep -q '"done"' <<<"$state"
  echo "$name: ok"
}

check_server demo
check_server blocking_server
