#!/usr/bin/env bash
# The official Durable Streams conformance suite (npm @durable-streams/server-conformance-tests,
# pinned by tests/durable-streams/package-lock.json) against `resumable-stream serve`:
# in memory, on a private redis-server, and on a private three-master Redis Cluster
# (`serve --redis-cluster`). The package is installed outside the tree
# (~/.cache/resumable-stream/durable-streams) and run programmatically with the vitest it
# brings (its own CLI finds no test file under node_modules).
#
# Prints the suite's own report and tally per store; writes the raw output to
# docs/durable-streams/last-run-{memory,redis,cluster}.txt. Exits non-zero when a test fails that
# docs/durable-streams/known-failures.md does not list (or a listed one is missing from
# the run's failures is only reported: it now passes, so the list can shrink).
#
#   scripts/durable-streams-test.sh [memory|redis|cluster]...   (default: memory redis)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
source scripts/lib/harness.sh
harness_init durable-streams

SUITE_DIR="${DURABLE_STREAMS_SUITE_DIR:-$HOME/.cache/resumable-stream/durable-streams}"
KNOWN="$ROOT/docs/durable-streams/known-failures.md"
STORES=("$@")
[ ${#STORES[@]} -gt 0 ] || STORES=(memory redis)
# The suite's default per-test timeout is 5 s, and two of its tests wait for the 204 of
# a long-poll that gets no data: the server's long-poll timeout must be shorter than
# that, and the suite is told it (its long-poll tests allow that much plus 1 s).
LONG_POLL_SECS=3

step "the conformance suite, pinned, in $SUITE_DIR"
node_packages "$SUITE_DIR" "$ROOT/tests/durable-streams" "@durable-streams/server-conformance-tests"
cp "$ROOT/tests/durable-streams/conformance.test.mjs" "$SUITE_DIR/"

step "cargo build -p resumable-stream-cli"
cargo build -q -p resumable-stream-cli
BIN="$ROOT/target/debug/resumable-stream"
trap - ERR

mkdir -p "$ROOT/docs/durable-streams"
status=0
for store in "${STORES[@]}"; do
  args=()
  # The reserved subscription APIs (the suite's 6 opt-in tests) are served in memory
  # only (501 on Redis); their webhook receiver listens on 127.0.0.1, which serve
  # refuses unless told otherwise (protocol section 12.8).
  subscriptions=0
  case "$store" in
    memory)
      subscriptions=1
      args=(--webhook-allow-loopback) ;;
    redis)
      start_redis
      args=(--redis "$REDIS_URL_PRIVATE") ;;
    cluster)
      start_redis_cluster 3
      args=(--redis-cluster "$REDIS_CLUSTER_URLS_PRIVATE") ;;
    *) echo "unknown store $store (memory, redis or cluster)"; status=1; continue ;;
  esac
  port="$(free_port)"
  "$BIN" serve --listen "127.0.0.1:$port" --long-poll-timeout "$LONG_POLL_SECS" "${args[@]}" \
    >"$WORK/serve-$store.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "serve ($store) did not start:"; cat "$WORK/serve-$store.log"
    [ "$store" != memory ] && grep -q 'not built yet' "$WORK/serve-$store.log" && continue
    status=1; continue
  fi

  step "the suite against serve ($store)"
  raw="$ROOT/docs/durable-streams/last-run-$store.txt"
  (cd "$SUITE_DIR" && DURABLE_STREAMS_URL="http://127.0.0.1:$port" \
    DURABLE_STREAMS_LONG_POLL_MS="$((LONG_POLL_SECS * 1000))" \
    DURABLE_STREAMS_SUBSCRIPTIONS="$subscriptions" NO_COLOR=1 \
    npx vitest run conformance.test.mjs --reporter=verbose 2>&1) | sed 's/\x1b\[[0-9;]*m//g' >"$raw" || true
  kill "$pid" 2>/dev/null || true

  # The tally by group, as the suite printed it: per top-level describe, passed and failed.
  echo "tally by group ($store):"
  grep -E '^ +[✓×↓] ' "$raw" | sed -E 's/^ +([✓×↓]) conformance\.test\.mjs > ([^>]+) > .*/\1\t\2/' |
    awk -F'\t' '{g=$2; sub(/ +$/, "", g); if (!(g in seen)) {seen[g]=1; order[++n]=g}
      if ($1=="✓") p[g]++; else if ($1=="×") f[g]++; else s[g]++}
      END {for (i=1;i<=n;i++) {g=order[i]; printf "  %-45s %3d passed %3d failed%s\n", g, p[g], f[g], (s[g]?sprintf(" %d skipped", s[g]):"")}}'
  grep -E '^ +Tests ' "$raw" | sed "s/^ */  ($store) /"

  # Failures outside the committed list fail the run.
  { grep -E '^ +× ' "$raw" || true; } | sed -E 's/^ +× conformance\.test\.mjs > //; s/ [0-9]+ms$//' | sort -u >"$WORK/failed-$store.txt"
  # Known failures: the lines before any `## ` heading apply to every store, those under
  # `## STORE` to that store only.
  awk -v store="$store" '/^## /{section=$2; next} /^- `/ && (section=="" || section==store)' "$KNOWN" |
    sed -E 's/^- `([^`]*)`.*/\1/' | sort -u >"$WORK/known.txt"
  unexpected="$(comm -23 "$WORK/failed-$store.txt" "$WORK/known.txt")"
  if [ -n "$unexpected" ]; then
    echo "UNEXPECTED failures ($store):"; printf '  %s\n' "$unexpected"; status=1
  fi
  fixed="$(comm -13 "$WORK/failed-$store.txt" "$WORK/known.txt")"
  [ -z "$fixed" ] || { echo "listed as known failures but passed ($store):"; printf '  %s\n' "$fixed"; }
done
exit "$status"
