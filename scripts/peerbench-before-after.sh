#!/usr/bin/env bash
# Before and after, in the same run: builds the peerbench example at a "before"
# revision (a detached git worktree under /tmp) and in the current tree, runs
# ../shared/peerbench/run-all.sh for each, one repetition at a time in alternating
# order (before, after; after, before; ...) so that a shared machine's drift hits both
# alike, then prints the medians and the ratios after/before per scenario, the node
# and python figures of each side beside them (those libraries did not change: their
# after/before ratio is the run's noise).
#
#   scripts/peerbench-before-after.sh BEFORE_REV OUT_DIR
#
# env: REPS=3  SCENARIOS="solo fanout resume_latency many many_bp join_live"
#      IMPLS="node python rust"  PEERBENCH_DIR=<repo>/../shared/peerbench
#      BEFORE_TARGET_DIR (cargo target dir of the before build; default: a fresh one
#      under /tmp, removed afterwards)  KEEP_WORKTREE=1 (keep the before worktree)
#      plus run-all.sh's own (PEERBENCH_REDIS_PORT, RUN_TIMEOUT).
# Writes OUT_DIR/{before,after}/rep-N/ (run-all.sh's results.jsonl, table.md, logs),
# OUT_DIR/bin/peerbench-{before,after}, OUT_DIR/revisions.txt and OUT_DIR/ratios.md.
set -euo pipefail

if [ $# -ne 2 ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 64
fi
REPO="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
BEFORE_REV="$(git -C "$REPO" rev-parse --verify "$1^{commit}")"
mkdir -p "$2"
OUT="$(cd "$2" && pwd)"
REPS="${REPS:-3}"
SCENARIOS="${SCENARIOS:-solo fanout resume_latency many many_bp join_live}"
IMPLS="${IMPLS:-node python rust}"
PEERBENCH_DIR="${PEERBENCH_DIR:-$REPO/../shared/peerbench}"
[ -f "$PEERBENCH_DIR/run-all.sh" ] || { echo "no run-all.sh in $PEERBENCH_DIR (set PEERBENCH_DIR)" >&2; exit 1; }

SCRATCH="$(mktemp -d /tmp/peerbench-before.XXXXXX)"
WORKTREE="$SCRATCH/tree"
cleanup() {
  if [ "${KEEP_WORKTREE:-0}" != 1 ]; then
    git -C "$REPO" worktree remove --force "$WORKTREE" 2>/dev/null || true
    rm -rf "$SCRATCH"
  else
    echo "kept the before worktree: $WORKTREE" >&2
  fi
}
trap cleanup EXIT

# Builds the peerbench example in tree $1 (cargo target dir $2, or the tree's default
# if empty) and prints the path of the binary cargo made.
build_peerbench() {
  local tree="$1" target="$2"
  (
    cd "$tree"
    if [ -n "$target" ]; then export CARGO_TARGET_DIR="$target"; fi
    cargo build --release -p resumable-stream-tokio --example peerbench --message-format=json-render-diagnostics |
      python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "peerbench" and message.get("executable"):
        print(message["executable"])'
  )
}

mkdir -p "$OUT/bin"
echo "before: $BEFORE_REV, in $WORKTREE" >&2
git -C "$REPO" worktree add --detach "$WORKTREE" "$BEFORE_REV" >&2
before_bin="$(build_peerbench "$WORKTREE" "${BEFORE_TARGET_DIR:-$SCRATCH/target}")"
echo "after: the current tree, $REPO" >&2
after_bin="$(build_peerbench "$REPO" "")"
[ -x "$before_bin" ] && [ -x "$after_bin" ] || { echo "a build made no peerbench binary" >&2; exit 1; }
cp "$before_bin" "$OUT/bin/peerbench-before"
cp "$after_bin" "$OUT/bin/peerbench-after"
{
  echo "before: $BEFORE_REV ($(git -C "$REPO" log -1 --format=%s "$BEFORE_REV"))"
  dirty=""
  [ -z "$(git -C "$REPO" status --porcelain --untracked-files=no)" ] || dirty=" plus uncommitted changes"
  echo "after: $(git -C "$REPO" rev-parse HEAD)$dirty ($(git -C "$REPO" log -1 --format=%s HEAD))"
  echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the start"
  echo "REPS=$REPS SCENARIOS=\"$SCENARIOS\" IMPLS=\"$IMPLS\""
} | tee "$OUT/revisions.txt" >&2

for rep in $(seq "$REPS"); do
  if [ $((rep % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  for side in $order; do
    echo "== rep $rep/$REPS: $side" >&2
    OUT_DIR="$OUT/$side/rep-$rep" REPS=1 SCENARIOS="$SCENARIOS" IMPLS="$IMPLS" \
      RUST_BENCH="$OUT/bin/peerbench-$side" bash "$PEERBENCH_DIR/run-all.sh" >/dev/null
  done
done

python3 - "$OUT" <<'PY' | tee "$OUT/ratios.md"
"""Medians of every side's runs and the ratios after/before, per scenario and impl."""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1]
ORDER = ["solo", "fanout", "resume_latency", "many", "many_bp", "join_live"]
METRICS = {
    "solo": ["chunks_per_s", "peak_rss_mib", "minor_faults", "redis_commands_total"],
    "fanout": ["chunks_per_s", "peak_rss_mib", "redis_commands_total"],
    "resume_latency": ["p50_ms", "p99_ms", "redis_commands_total"],
    "many": ["chunks_per_s", "peak_rss_mib", "redis_commands_total"],
    "many_bp": ["chunks_per_s", "peak_rss_mib", "redis_commands_total"],
    "join_live": ["chunks_per_s", "redis_commands_total"],
}
# Figures of a run count only if every reader got exactly the input.
TIMED = {"chunks_per_s", "p50_ms", "p99_ms", "wall_s", "minor_faults"}


def runs(side):
    rows = []
    for path in sorted(glob.glob(os.path.join(out, side, "rep-*", "results.jsonl"))):
        rows += [json.loads(line) for line in open(path) if line.strip()]
    return rows


sides = {side: runs(side) for side in ("before", "after")}
impls = []
for rows in sides.values():
    for row in rows:
        if row.get("impl") and row["impl"] not in impls:
            impls.append(row["impl"])


def median(side, scenario, impl, key):
    rows = [r for r in sides[side] if r.get("variant", r.get("scenario")) == scenario and r.get("impl") == impl]
    rows = [r for r in rows if "error" not in r and key in r]
    if key in TIMED:
        rows = [r for r in rows if r.get("verified") is True]
    return statistics.median(r[key] for r in rows) if rows else None


def verified(side, scenario, impl):
    rows = [r for r in sides[side] if r.get("variant", r.get("scenario")) == scenario and r.get("impl") == impl]
    return f"{sum(1 for r in rows if r.get('verified') is True and 'error' not in r)}/{len(rows)}" if rows else ""


def show(x, key):
    if x is None:
        return "—"
    if key.endswith("_mib"):
        return f"{x:.1f}"
    if key.endswith("_ms"):
        return f"{x:.3f}"
    return f"{x:,.0f}"


def ratio(after, before):
    return f"{after / before:.3f}" if after is not None and before else "—"


print(open(os.path.join(out, "revisions.txt")).read().strip().replace("\n", "  \n"))
print()
print("Medians over the repetitions (timed figures from verified runs only); after/before")
print("of node and python shows the run's noise, since those libraries did not change.")
print()
print("| scenario | metric | impl | before | after | after/before | verified before | verified after |")
print("|---|---|---|---|---|---|---|---|")
for scenario in ORDER:
    for key in METRICS[scenario]:
        for impl in impls:
            before = median("before", scenario, impl, key)
            after = median("after", scenario, impl, key)
            if before is None and after is None:
                continue
            print(f"| {scenario} | {key} | {impl} | {show(before, key)} | {show(after, key)} | {ratio(after, before)} "
                  f"| {verified('before', scenario, impl)} | {verified('after', scenario, impl)} |")
print()
print("Rust against the peers on each side (rust / peer; for p50/p99 lower is better):")
print()
print("| scenario | metric | peer | before | after |")
print("|---|---|---|---|---|")
for scenario in ORDER:
    key = "p99_ms" if scenario == "resume_latency" else "chunks_per_s"
    for peer in [i for i in impls if i != "rust"]:
        cells = []
        for side in ("before", "after"):
            ours, theirs = median(side, scenario, "rust", key), median(side, scenario, peer, key)
            cells.append(f"{ours / theirs:.2f}x" if ours is not None and theirs else "—")
        if any(c != "—" for c in cells):
            print(f"| {scenario} | {key} | {peer} | {cells[0]} | {cells[1]} |")
PY
echo "results: $OUT (ratios.md)" >&2
