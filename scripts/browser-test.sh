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
# playwright-core (the exact version and lock of tests/browser/package.json) with
# `npm ci` in $RS_BROWSER_NODE_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/resumable-stream/browser), outside the source tree
# (the helpers: scripts/lib/harness.sh). Servers listen on free 127.0.0.1
# ports; redis-server runs without persistence. Every run is bounded by a timeout; the
# exit status is non-zero if any check failed. The last line is `N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_DIR="${RS_BROWSER_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/resumable-stream/browser}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
# The pace of the simulated answer: slow enough that every interruption lands
# mid-stream on a loaded machine (about 11 s per stream).
TOKEN_MS="${TOKEN_MS:-150}"

source scripts/lib/harness.sh
harness_init browser-test

step "tools"
[ -x "$CHROMIUM" ] || apt_install chromium
command -v node >/dev/null 2>&1 || apt_install nodejs npm
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v python3 >/dev/null 2>&1 || apt_install python3
# Debian's wrapper script prints a harmless shell warning on some machines.
echo "$("$CHROMIUM" --version 2>/dev/null), node $(node --version), $(redis-server --version | cut -d' ' -f1-3)"

step "npm packages of tests/browser/package.json in $NODE_DIR"
node_packages "$NODE_DIR" tests/browser playwright-core
node -e 'console.log(`playwright-core@${require(`${process.argv[1]}/node_modules/playwright-core/package.json`).version}`)' "$NODE_DIR"

step "the servers"
cargo build -q -p resumable-stream-tokio --example demo
cargo build -q -p resumable-stream-blocking --example blocking_server
BIN="${CARGO_TARGET_DIR:-target}/debug/examples"

start_redis
start_server tokio-memory "$BIN/demo"; TOKIO_MEM="$URL"
start_server blocking-memory "$BIN/blocking_server"; BLOCKING_MEM="$URL"
start_server tokio-redis-a "$BIN/demo" "$REDIS_URL_PRIVATE"; TOKIO_A="$URL"
start_server tokio-redis-b "$BIN/demo" "$REDIS_URL_PRIVATE"; TOKIO_B="$URL"
start_server blocking-redis-a "$BIN/blocking_server" "$REDIS_URL_PRIVATE"; BLOCKING_A="$URL"
echo "tokio $TOKIO_MEM, blocking $BLOCKING_MEM (in memory); on redis $REDIS_URL_PRIVATE: tokio $TOKIO_A and $TOKIO_B, blocking $BLOCKING_A"
trap - ERR

passed=0
failed=0
# run TEST LOGS NAME ARGS..: one page test (tests/browser/TEST.test.mjs); the tail of
# the server logs matching LOGS if it fails.
run() {
  local test="$1" logs="$2" name="$3"; shift 3
  step "browser: $name"
  if RS_BROWSER_NODE_DIR="$NODE_DIR" CHROMIUM="$CHROMIUM" \
    timeout --kill-after=10 180 node "tests/browser/$test.test.mjs" --name "$name" "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "--- server logs of the failed run ---"
    tail -n 20 "$WORK"/$logs.log
  fi
}

run demo "*" "tokio demo, in memory" --base "$TOKIO_MEM"
run demo "*" "blocking server, in memory" --base "$BLOCKING_MEM"
run demo "*" "two tokio instances on one Redis" --base "$TOKIO_A" --second "$TOKIO_B"
run demo "*" "blocking then tokio instance on one Redis" --base "$BLOCKING_A" --second "$TOKIO_B"

# The ai_chat example's page (tests/browser/ai_chat.test.mjs): a chat in the Vercel AI
# SDK's protocol, cut and resumed, reloaded and resumed (GET /api/chat/{id}/stream, as
# useChat({ resume: true }) asks on mount), followed from a second tab; in memory, and
# on two instances sharing the private redis-server (the second tab on the second).
ai_chat_pages() {
  local memory a b
  step "the ai_chat servers"
  cargo build -q -p resumable-stream-axum --example ai_chat || { failed=$((failed + 1)); return; }
  start_server ai-chat-memory "$BIN/ai_chat" || { failed=$((failed + 1)); return; }
  memory="$URL"
  start_server ai-chat-redis-a "$BIN/ai_chat" "$REDIS_URL_PRIVATE" || { failed=$((failed + 1)); return; }
  a="$URL"
  start_server ai-chat-redis-b "$BIN/ai_chat" "$REDIS_URL_PRIVATE" || { failed=$((failed + 1)); return; }
  b="$URL"
  echo "ai_chat $memory (in memory); $a and $b on redis $REDIS_URL_PRIVATE"
  run ai_chat "ai-chat-*" "ai_chat, in memory" --base "$memory"
  run ai_chat "ai-chat-*" "ai_chat, two instances on one Redis" --base "$a" --second "$b"
}
ai_chat_pages

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
