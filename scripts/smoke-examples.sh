#!/usr/bin/env bash
# Runs each example for real on the in-memory backend: the hand-driven poll loop to
# its end, and both SSE servers (tokio + axum, blocking + tiny_http) through one whole
# stream, a resume by UTF-16 offset and one by Last-Event-ID, a malformed Last-Event-ID and offset,
# the answer route and a state query, on loopback ports of their own. (The page itself
# is tested in a browser by scripts/browser-test.sh.)
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
  curl -fsSN --max-time 30 "$base/api/stream/smoke?offset=10" >"/tmp/smoke-$name.resumed" &
  local resumed=$!
  # The browser's reconnection: Last-Event-ID wins over the stale offset in the URL.
  curl -fsSN --max-time 30 -H 'Last-Event-ID: 5' "$base/api/stream/smoke?offset=3" >"/tmp/smoke-$name.by-id"
  wait "$full"
  wait "$resumed"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Last-Event-ID: 5x' "$base/api/stream/smoke")" = 400 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/api/stream/smoke?offset=-1")" = 400 ]
  curl -fsS "$base/api/answer" >"/tmp/smoke-$name.answer"
  grep -q '"role":"producer"' "/tmp/smoke-$name.full"
  grep -q '"role":"resumer"' "/tmp/smoke-$name.resumed"
  grep -q '"from":{"chunk":5}' "/tmp/smoke-$name.by-id"
  grep -q '^event: end' "/tmp/smoke-$name.full"
  grep -q '^event: end' "/tmp/smoke-$name.resumed"
  grep -q '^event: end' "/tmp/smoke-$name.by-id"
  python3 - "/tmp/smoke-$name.full" "/tmp/smoke-$name.resumed" "/tmp/smoke-$name.by-id" "/tmp/smoke-$name.answer" <<'PY'
import base64, sys
def events(path):
    """(id, bytes) of each chunk event: text events (data lines joined with LF), or
    `bytes` events (base64), as resumable_stream::sse frames them."""
    out = []
    for block in open(path, encoding="utf-8").read().split("\n\n"):
        lines = block.split("\n")
        kinds = [l[6:].strip() for l in lines if l.startswith("event:")]
        if kinds and kinds != ["bytes"]:
            continue
        data = "\n".join(l[6:] if l.startswith("data: ") else l[5:] for l in lines if l.startswith("data:"))
        ids = [int(l[3:].strip()) for l in lines if l.startswith("id:")]
        if any(l.startswith("data:") for l in lines):
            chunk = base64.b64decode(data, validate=True) if kinds else data.encode("utf-8")
            out.append((ids[0] if ids else None, chunk))
    return out
def text(path):
    return b"".join(t for _, t in events(path)).decode("utf-8")
full, resumed, by_id = text(sys.argv[1]), text(sys.argv[2]), text(sys.argv[3])
answer = open(sys.argv[4], encoding="utf-8").read()
assert full == answer, (full, answer)
ids = [i for i, _ in events(sys.argv[1])]
assert ids == list(range(1, len(ids) + 1)), ids
units = full.encode("utf-16-le")
assert resumed == units[20:].decode("utf-16-le"), (full, resumed)
after_5 = b"".join(t for i, t in events(sys.argv[1]) if i > 5).decode("utf-8")
assert by_id == after_5, (by_id, after_5)
print(f"  {len(full)} characters in {len(ids)} events with ids 1..{len(ids)}; the resumes from UTF-16 offset 10 and from Last-Event-ID 5 match")
PY
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/api/stream/smoke")" = 204 ]
  local state
  state="$(curl -fsS "$base/api/state/smoke")"
  grep -q '"done"' <<<"$state"
  echo "$name: ok"
}

check_server demo
check_server blocking_server
