#!/usr/bin/env bash
# Durable mode against pub/sub, measured side by side: every peerbench scenario run in
# both modes against one private redis-server on loopback, REPS times, the modes taking
# turns (pub/sub, durable, pub/sub, durable, ...) so that a shared machine's drift hits
# both alike; llm_paced also with longer lingers. Writes the raw JSON lines and the
# table made from them (scripts/durable-bench-report.py: medians, durable ÷ pub/sub):
#
#   bash scripts/durable-bench.sh
#
# env: REPS=3  RUN_TIMEOUT=120 (seconds per run, then it is killed and counted failed)
#      SCENARIOS="solo fanout resume_latency many join_live llm_paced llm_paced_long
#        llm_paced_few"
#      LONG_LINGERS="200 1000" (extra durable lingers of the llm_paced cases, ms)
#      OUT_DIR=docs/performance/durable
# llm_paced is 1000 streams × 100 chunks at 50 chunks/s; llm_paced_long the same with
# 500 chunks (10 s); llm_paced_few 100 streams × 500 chunks (a lightly loaded event
# loop). Writes OUT_DIR/results.jsonl (one line per run), OUT_DIR/run.txt (machine,
# revision) and OUT_DIR/table.md. Exit 1 if any run is unverified or failed.
# About 5 minutes on 2 cores.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
source "$REPO/scripts/lib/harness.sh"
REPS="${REPS:-3}"
RUN_TIMEOUT="${RUN_TIMEOUT:-120}"
SCENARIOS="${SCENARIOS:-solo fanout resume_latency many join_live llm_paced llm_paced_long llm_paced_few}"
LONG_LINGERS="${LONG_LINGERS:-200 1000}"
OUT_DIR="${OUT_DIR:-$REPO/docs/performance/durable}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

harness_init durable-bench

step "build (release, once)"
BIN="$(cd "$REPO" && cargo build --release -p resumable-stream-tokio --example peerbench \
  --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "peerbench" and message.get("executable"):
        print(message["executable"])')"
[ -x "$BIN" ] || { echo "the build made no peerbench binary" >&2; exit 1; }
cp "$BIN" "$WORK/peerbench"
BIN="$WORK/peerbench"

step "private redis-server"
start_redis
PORT="${REDIS_URL_PRIVATE##*:}"
echo "$REDIS_URL_PRIVATE"
trap - ERR

{
  echo "command: bash scripts/durable-bench.sh (REPS=$REPS RUN_TIMEOUT=$RUN_TIMEOUT LONG_LINGERS=\"$LONG_LINGERS\")"
  echo "scenarios: $SCENARIOS"
  dirty=""
  [ -z "$(git -C "$REPO" status --porcelain --untracked-files=no)" ] || dirty=" plus uncommitted changes"
  echo "tree: $(git -C "$REPO" rev-parse --short HEAD)$dirty"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg) at the start"
  echo "redis: $(redis-server --version | grep -o 'v=[^ ]*'), private, loopback, no persistence"
  echo "runtime: tokio current_thread (peerbench's default), release build"
} | tee "$OUT_DIR/run.txt"

# The modes of a scenario, one per line: the flags after --durable, or "pubsub".
modes_of() {
  echo pubsub
  echo ""
  case "$1" in
    llm_paced*)
      for ms in $LONG_LINGERS; do echo "--linger-ms $ms"; done ;;
  esac
}

# run SCENARIO MODE: one run, its JSON line appended to results.jsonl (a line of ours
# with "error" if it printed none).
run() {
  local scenario="$1" mode="$2" args=() line rc=0
  case "$scenario" in
    llm_paced_long) args=(--scenario llm_paced --chunks-per-stream 500) ;;
    llm_paced_few) args=(--scenario llm_paced --streams 100 --chunks-per-stream 500) ;;
    *) args=(--scenario "$scenario") ;;
  esac
  if [ "$mode" != pubsub ]; then
    # shellcheck disable=SC2206 # the mode's flags, split on purpose
    args+=(--durable $mode)
  fi
  redis-cli -p "$PORT" FLUSHALL >/dev/null
  timeout --kill-after=5 "$RUN_TIMEOUT" "$BIN" --redis "$REDIS_URL_PRIVATE" \
    --timeout "$((RUN_TIMEOUT - 10))" "${args[@]}" >"$WORK/out" 2>"$WORK/err" || rc=$?
  line="$(tail -n 1 "$WORK/out")"
  if ! python3 -c 'import json, sys; json.loads(sys.argv[1])' "$line" 2>/dev/null; then
    line="$(python3 -c 'import json, sys; print(json.dumps({"impl": "rust", "scenario": sys.argv[1], "args": sys.argv[2], "error": "no JSON line (exit %s): %s" % (sys.argv[3], open(sys.argv[4]).read()[-400:])}))' \
      "$scenario" "${args[*]}" "$rc" "$WORK/err")"
  fi
  echo "$line" >>"$OUT_DIR/results.jsonl"
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
print("  %-16s %-22s exit %s  verified %s  %s chunks/s  %s s" % (sys.argv[2], d.get("mode", "?"), sys.argv[3],
      d.get("verified"), d.get("chunks_per_s", "-"), d.get("wall_s", "-")), d.get("error", ""))' "$line" "$scenario" "$rc"
}

: >"$OUT_DIR/results.jsonl"
for rep in $(seq 1 "$REPS"); do
  step "rep $rep of $REPS"
  for scenario in $SCENARIOS; do
    while IFS= read -r mode; do
      run "$scenario" "$mode"
    done < <(modes_of "$scenario")
  done
done

step "table"
python3 "$REPO/scripts/durable-bench-report.py" "$OUT_DIR/results.jsonl" "$OUT_DIR/run.txt" >"$OUT_DIR/table.md"
cat "$OUT_DIR/table.md"
if [ "$OUT_DIR" = "$REPO/docs/performance/durable" ]; then
  # docs/performance.md quotes the tables: spliced in by the same code, never by hand.
  python3 "$REPO/scripts/durable-bench-report.py" --splice "$OUT_DIR/results.jsonl" "$REPO/docs/performance.md"
fi
python3 "$REPO/scripts/durable-bench-report.py" --check "$OUT_DIR/results.jsonl"
