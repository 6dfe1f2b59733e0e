#!/usr/bin/env bash
# The Vercel AI SDK's own client against the `ai_chat` example of resumable-stream-axum:
# scripts/aisdk/chat.test.mjs drives `DefaultChatTransport` (npm `ai`, the exact version
# of scripts/aisdk/package.json and its lock) through sendMessages and reconnectToStream:
# a chat streams whole; a chat cut after a few deltas is resumed whole; after the end,
# and for a chat that never ran, a reconnect gets 204; a new message in a chat starts a
# new stream; a stop ends an answer with an error part. Three setups:
#
#   1. one ai_chat in memory;
#   2. two ai_chat instances on one private redis-server: sent to the first, resumed
#      on the second;
#   3. the same the other way round.
#
# Installs what it needs, idempotently: node and redis-server with apt-get; the npm
# packages with `npm ci` in $RS_AISDK_NODE_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/resumable-stream/aisdk), outside the source tree.
# `ai` 7 declares node >= 22; the version used is printed, and the test runs on what
# the machine has. Servers listen on free 127.0.0.1 ports; redis-server runs without
# persistence (the helpers: scripts/lib/harness.sh). Every run is bounded by a
# timeout. The last line is the tally of checks, `N passed, M failed`; the exit status
# is non-zero if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_DIR="${RS_AISDK_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/resumable-stream/aisdk}"
# The pace of the simulated model: slow enough that a cut after five deltas and the
# resume that follows land mid-stream on a loaded machine (about 2.5 s per answer).
TOKEN_MS="${TOKEN_MS:-40}"

source scripts/lib/harness.sh
harness_init aisdk-test

step "tools"
command -v node >/dev/null 2>&1 || apt_install nodejs npm
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v python3 >/dev/null 2>&1 || apt_install python3
command -v curl >/dev/null 2>&1 || apt_install curl
echo "node $(node --version), npm $(npm --version), $(redis-server --version | cut -d' ' -f1-3)"

step "npm packages of scripts/aisdk/package.json in $NODE_DIR"
# `ai` declares engines.node >= 22: npm warns (EBADENGINE) and installs.
node_packages "$NODE_DIR" scripts/aisdk ai
node -e '
  const dir = process.argv[1];
  const want = require(`${process.cwd()}/scripts/aisdk/package.json`).dependencies.ai;
  const pkg = require(`${dir}/node_modules/ai/package.json`);
  console.log(`ai@${pkg.version} (pinned ${want}; declares node ${pkg.engines?.node ?? "any"}), running on node ${process.version}`);
  process.exit(pkg.version === want ? 0 : 1);' "$NODE_DIR"

step "ai_chat"
cargo build -q -p resumable-stream-axum --example ai_chat
BIN="${CARGO_TARGET_DIR:-target}/debug/examples/ai_chat"
start_redis
start_server memory "$BIN"; MEMORY="$URL"
start_server redis-a "$BIN" "$REDIS_URL_PRIVATE"; A="$URL"
start_server redis-b "$BIN" "$REDIS_URL_PRIVATE"; B="$URL"

echo "in memory $MEMORY; on redis $REDIS_URL_PRIVATE: $A and $B; TOKEN_MS=$TOKEN_MS"
trap - ERR

passed=0
failed=0
run() {
  local name="$1" out status=0; shift
  step "AI SDK client: $name"
  out="$WORK/run.out"
  RS_AISDK_NODE_DIR="$NODE_DIR" timeout --kill-after=10 150 \
    node scripts/aisdk/chat.test.mjs --name "$name" "$@" 2>&1 | tee "$out" || status=$?
  # The run's own tally, `NAME: N passed, M failed (S s)`; a run that died before it
  # counts as one failure.
  local tally run_passed=0 run_failed=0
  tally="$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1 || true)"
  if [ -n "$tally" ]; then
    run_passed="${tally%% passed*}"
    run_failed="${tally#*, }"
    run_failed="${run_failed%% failed*}"
  fi
  # A non-zero exit with no failure counted (a crash, the timeout) is one failure.
  if [ "$status" -ne 0 ] && [ "$run_failed" -eq 0 ]; then run_failed=1; fi
  passed=$((passed + run_passed))
  failed=$((failed + run_failed))
  if [ "$run_failed" -ne 0 ]; then
    echo "--- server logs of the failed run ---"
    tail -n 20 "$WORK"/*.log
  fi
}

run "in memory" --a "$MEMORY"
run "two instances on one Redis: sent to A, resumed on B" --a "$A" --b "$B"
run "two instances on one Redis: sent to B, resumed on A" --a "$B" --b "$A"

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
