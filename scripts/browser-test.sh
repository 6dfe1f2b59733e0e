#!/usr/bin/env bash
# The demo page in a real headless browser: Debian's chromium driven by playwright-core
# (tests/browser/demo.test.mjs). For each server setup below it loads the page, starts
# a stream, cuts the connection (the browser resumes by Last-Event-ID), opens a second
# tab on the same stream, reloads the first (it resumes by UTF-16 offset), and checks
# that both tabs end with the whole answer exactly once.
#
#   1. the tokio demo, in memory;
#   2. the blocking server, in memory;
#   3. two tokio demo instances on one private redis-server, the second tab on the
#      second instance;
#   4. the same with the blocking server as the first instance and the tokio demo as
#      the second (two drivers sharing one stream).
#
# Then the ai_chat example's page (tests/browser/ai_chat.test.mjs), in memory and on two
# instances on the same redis-server: see ai_chat_pages below.
#
# Installs what it needs, idempotently: chromium, node and redis-server with apt-get;
# playwright-core (pinned) with npm in $RS_BROWSER_NODE_DIR (default
# /tmp/rs-browser-node), outside the source tree. Servers listen on free 127.0.0.1
# ports; redis-server runs without persistence. Every run is bounded by a timeout; the
# exit status is non-zero if any check failed. The last line is `N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_DIR="${RS_BROWSER_NODE_DIR:-/tmp/rs-browser-node}"
PLAYWRIGHT_VERSION=1.65.1
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
# The pace of the simulated answer: slow enough that every interruption lands
# mid-stream on a loaded machine (about 11 s per stream).
TOKEN_MS="${TOKEN_MS:-150}"

step() { printf '\n==> %s\n' "$*"; }
need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { need_root apt-get update -qq; apt_updated=1; }
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PIDS=()
WORK="$(mktemp -d /tmp/rs-browser-test.XXXXXX)"
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
# A setup step that fails still ends with the summary line.
trap 'echo "browser test: setup failed (line $LINENO)" >&2; echo "0 passed, 1 failed"' ERR

step "tools"
[ -x "$CHROMIUM" ] || apt_install chromium
command -v node >/dev/null 2>&1 || apt_install nodejs npm
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v python3 >/dev/null 2>&1 || apt_install python3
# Debian's wrapper script prints a harmless shell warning on some machines.
echo "$("$CHROMIUM" --version 2>/dev/null), node $(node --version), $(redis-server --version | cut -d' ' -f1-3)"

step "playwright-core@$PLAYWRIGHT_VERSION in $NODE_DIR"
playwright_ok() {
  node -e '
    try { process.exit(require(`${process.argv[1]}/node_modules/playwright-core/package.json`).version === process.argv[2] ? 0 : 1); }
    catch { process.exit(1); }' "$NODE_DIR" "$PLAYWRIGHT_VERSION"
}
if playwright_ok; then
  echo "already installed"
else
  mkdir -p "$NODE_DIR"
  [ -f "$NODE_DIR/package.json" ] || echo '{"name":"rs-browser-node","private":true}' >"$NODE_DIR/package.json"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --save-exact "playwright-core@$PLAYWRIGHT_VERSION"
  playwright_ok
fi

step "the servers"
cargo build -q -p resumable-stream-tokio --example demo
cargo build -q -p resumable-stream-blocking --example blocking_server
BIN="${CARGO_TARGET_DIR:-target}/debug/examples"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server NAME BINARY [REDIS_URL]: starts it on a free port; sets URL to its base.
start_server() {
  local name="$1" binary="$2" redis="${3:-}" port pid
  port="$(free_port)"
  if [ -n "$redis" ]; then
    env -u KV_URL REDIS_URL="$redis" TOKEN_MS="$TOKEN_MS" "$BIN/$binary" --port "$port" >"$WORK/$name.log" 2>&1 &
  else
    env -u REDIS_URL -u KV_URL TOKEN_MS="$TOKEN_MS" "$BIN/$binary" --port "$port" >"$WORK/$name.log" 2>&1 &
  fi
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { URL="http://127.0.0.1:$port"; return; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start:" >&2
  cat "$WORK/$name.log" >&2
  return 1
}

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null
REDIS_URL_PRIVATE="redis://127.0.0.1:$REDIS_PORT"

start_server tokio-memory demo; TOKIO_MEM="$URL"
start_server blocking-memory blocking_server; BLOCKING_MEM="$URL"
start_server tokio-redis-a demo "$REDIS_URL_PRIVATE"; TOKIO_A="$URL"
start_server tokio-redis-b demo "$REDIS_URL_PRIVATE"; TOKIO_B="$URL"
start_server blocking-redis-a blocking_server "$REDIS_URL_PRIVATE"; BLOCKING_A="$URL"
echo "tokio $TOKIO_MEM, blocking $BLOCKING_MEM (in memory); on redis $REDIS_URL_PRIVATE: tokio $TOKIO_A and $TOKIO_B, blocking $BLOCKING_A"
trap - ERR

passed=0
failed=0
run() {
  local name="$1"; shift
  step "browser: $name"
  if RS_BROWSER_NODE_DIR="$NODE_DIR" CHROMIUM="$CHROMIUM" \
    timeout --kill-after=10 180 node tests/browser/demo.test.mjs --name "$name" "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "--- server logs of the failed run ---"
    tail -n 20 "$WORK"/*.log
  fi
}

run "tokio demo, in memory" --base "$TOKIO_MEM"
run "blocking server, in memory" --base "$BLOCKING_MEM"
run "two tokio instances on one Redis" --base "$TOKIO_A" --second "$TOKIO_B"
run "blocking then tokio instance on one Redis" --base "$BLOCKING_A" --second "$TOKIO_B"

# The ai_chat example's page (tests/browser/ai_chat.test.mjs): a chat in the Vercel AI
# SDK's protocol, cut and resumed, reloaded and resumed (GET /api/chat/{id}/stream, as
# useChat({ resume: true }) asks on mount), followed from a second tab; in memory, and
# on two instances sharing the private redis-server (the second tab on the second).
ai_chat_pages() {
  local memory a b
  step "the ai_chat servers"
  cargo build -q -p resumable-stream-axum --example ai_chat || { failed=$((failed + 1)); return; }
  start_server ai-chat-memory ai_chat || { failed=$((failed + 1)); return; }
  memory="$URL"
  start_server ai-chat-redis-a ai_chat "$REDIS_URL_PRIVATE" || { failed=$((failed + 1)); return; }
  a="$URL"
  start_server ai-chat-redis-b ai_chat "$REDIS_URL_PRIVATE" || { failed=$((failed + 1)); return; }
  b="$URL"
  echo "ai_chat $memory (in memory); $a and $b on redis $REDIS_URL_PRIVATE"
  local name
  for name in "ai_chat, in memory" "ai_chat, two instances on one Redis"; do
    step "browser: $name"
    local where=(--base "$memory")
    [ "$name" = "ai_chat, in memory" ] || where=(--base "$a" --second "$b")
    if RS_BROWSER_NODE_DIR="$NODE_DIR" CHROMIUM="$CHROMIUM" \
      timeout --kill-after=10 180 node tests/browser/ai_chat.test.mjs --name "$name" "${where[@]}"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      echo "--- server logs of the failed run ---"
      tail -n 20 "$WORK"/ai-chat-*.log
    fi
  done
}
ai_chat_pages

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
