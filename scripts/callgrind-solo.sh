#!/usr/bin/env bash
# Instruction counts of peerbench's solo scenario, where seconds are too noisy (a
# shared machine): callgrind counts only the measured phase (the bench marks it with
# measure_start / measure_end), at 20,000 and 200,000 chunks, so the instructions per
# chunk and their marginal cost come out exactly; the page faults of the same phase
# and the chunks/s of native runs (medians of RUNS) come beside them, and the engine's
# own instructions per chunk in the criterion loop of benches/core.rs
# (producer_chunk/listeners/0) for reference.
#
#   scripts/callgrind-solo.sh OUT_DIR [LABEL=PEERBENCH_BINARY ...]
#
# Without binaries it builds the current tree's peerbench (a plain release build).
# env: RUNS=15 (native runs per binary)  PEERBENCH_DIR=<repo>/../shared/peerbench
#      (its lib.sh starts the private redis-server)  ENGINE=0 (skip the criterion loop)
# Writes OUT_DIR/LABEL/ (callgrind outputs, callgrind_annotate summaries, native
# runs' JSON lines), OUT_DIR/engine/ and OUT_DIR/summary.md.
set -euo pipefail

if [ $# -lt 1 ]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 64
fi
REPO="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
shift
RUNS="${RUNS:-15}"
PEERBENCH_DIR="${PEERBENCH_DIR:-$REPO/../shared/peerbench}"
# shellcheck source=/dev/null
source "$PEERBENCH_DIR/lib.sh" # start_redis / stop_redis: a private, throw-away server

# Prints the path of the executable cargo built for target $1 (cargo's JSON lines).
executable() {
  python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == sys.argv[1] and message.get("executable"):
        print(message["executable"])' "$1"
}

binaries=("$@")
if [ ${#binaries[@]} -eq 0 ]; then
  bin="$(cd "$REPO" && cargo build --release -p resumable-stream-tokio --example peerbench \
    --message-format=json-render-diagnostics | executable peerbench)"
  binaries=("current=$bin")
fi

start_redis
for pair in "${binaries[@]}"; do
  label="${pair%%=*}" bin="${pair#*=}"
  dir="$OUT/$label"
  mkdir -p "$dir"
  echo "== $label: $bin" >&2
  for n in 20000 200000; do
    rm -f "$dir/callgrind.solo.$n.out"*
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    valgrind --tool=callgrind --zero-before='peerbench::measure_start' \
      --dump-before='peerbench::measure_end' --callgrind-out-file="$dir/callgrind.solo.$n.out" \
      "$bin" --redis "$REDIS_URL" --scenario solo --n "$n" --timeout 600 \
      >"$dir/callgrind.solo.$n.json" 2>"$dir/callgrind.solo.$n.log"
    # Part 1 is the measured phase (up to --dump-before); the rest is dropped.
    [ -f "$dir/callgrind.solo.$n.out.1" ] || { echo "$bin has no measure_start/measure_end markers" >&2; exit 1; }
    mv "$dir/callgrind.solo.$n.out.1" "$dir/callgrind.solo.$n.phase"
    rm -f "$dir/callgrind.solo.$n.out"
    callgrind_annotate --inclusive=yes --auto=no "$dir/callgrind.solo.$n.phase" >"$dir/callgrind.solo.$n.inclusive.txt" 2>/dev/null
  done
  : >"$dir/native.jsonl"
  for _ in $(seq "$RUNS"); do
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    "$bin" --redis "$REDIS_URL" --scenario solo | tail -n 1 >>"$dir/native.jsonl"
  done
done
stop_redis

if [ "${ENGINE:-1}" != 0 ]; then
  echo "== engine: criterion's producer_chunk/listeners/0 under callgrind" >&2
  mkdir -p "$OUT/engine"
  core="$(cd "$REPO" && cargo bench -p resumable-stream --bench core --no-run \
    --message-format=json-render-diagnostics | executable core)"
  rm -f "$OUT/engine/callgrind.core.out"
  valgrind --tool=callgrind --callgrind-out-file="$OUT/engine/callgrind.core.out" \
    "$core" --bench --profile-time 3 'producer_chunk/listeners/0$' >"$OUT/engine/callgrind.core.log" 2>&1
fi

python3 - "$OUT" "${binaries[@]}" <<'PY' | tee "$OUT/summary.md"
"""Instructions per chunk from the callgrind outputs; faults and chunks/s from the runs."""
import json
import os
import re
import statistics
import sys

out, pairs = sys.argv[1], sys.argv[2:]


def totals(path):
    for line in open(path):
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def calls_and_inclusive(path, names):
    """Calls and inclusive Ir of the functions named `names`, summed over call sites."""
    ids, calls, inclusive = {}, {}, {}
    callee, pending = None, None
    for line in open(path):
        match = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if match:
            if match.group(3):
                ids[match.group(2)] = match.group(3)
            if match.group(1) == "cfn":
                callee = match.group(2)
            continue
        match = re.match(r"^calls=(\d+)", line)
        if match:
            pending = int(match.group(1))
            continue
        if pending is not None:
            name = ids.get(callee, "")
            for wanted in names:
                if name == wanted:
                    calls[wanted] = calls.get(wanted, 0) + pending
                    inclusive[wanted] = inclusive.get(wanted, 0) + int(line.split()[1])
            pending = None
    return calls, inclusive


print("| build | Ir per chunk, solo (20,000) | marginal Ir per chunk (20,000 → 200,000) "
      "| minor page faults (20,000) | chunks/s, median / best of native runs |")
print("|---|---|---|---|---|")
for pair in pairs:
    label = pair.split("=", 1)[0]
    d = os.path.join(out, label)
    small = totals(os.path.join(d, "callgrind.solo.20000.phase"))
    large = totals(os.path.join(d, "callgrind.solo.200000.phase"))
    runs = [json.loads(line) for line in open(os.path.join(d, "native.jsonl")) if line.strip()]
    good = [r for r in runs if r.get("verified") is True]
    faults = statistics.median(r["minor_faults"] for r in good) if good else None
    rates = [r["chunks_per_s"] for r in good]
    rate = f"{statistics.median(rates):,.0f} / {max(rates):,.0f} ({len(good)}/{len(runs)} verified)" if rates else "—"
    print(f"| {label} | {small / 20000:.1f} | {(large - small) / 180000:.1f} | {faults} | {rate} |")

# Where a chunk's instructions go: inclusive Ir of the path's functions, per chunk,
# marginal between the two runs (what 180,000 more chunks cost).
PATH_FUNCTIONS = [
    ("the producer loop's task (all of the producing side)", "resumable_stream_driver::production::produce_task::{{closure}}"),
    ("  pulling the source (user code, caught per poll before, per batch after)", "resumable_stream_driver::production::catch_source_panic"),
    ("  Hub::feed_source (lock, engine, routing)", "resumable_stream_driver::hub::Hub::feed_source"),
    ("    Engine::push_chunk", "resumable_stream::engine::Engine::push_chunk"),
    ("    Hub::route (staging, mailbox hand-off)", "resumable_stream_driver::hub::Hub::route"),
    ("      Engine::poll_event", "resumable_stream::engine::Engine::poll_event"),
    ("      mailbox Sender::send_all", "resumable_stream_driver::mailbox::Sender<T>::send_all"),
    ("the reader's poll (ResumableStream::poll_next)", "<resumable_stream_driver::face::ResumableStream as futures_core::stream::Stream>::poll_next"),
    ("  Reader::poll_next", "resumable_stream_driver::reader::Reader::poll_next"),
    ("malloc", "malloc"),
    ("realloc (growing a Vec or VecDeque)", "realloc"),
    ("memcpy (of it: realloc's copies, the bench's output)", "__memcpy_avx_unaligned_erms"),
    ("memcmp (the bench's check of every byte)", "__memcmp_avx2_movbe"),
]
names = [name for _, name in PATH_FUNCTIONS]
per_chunk = {}
for pair in pairs:
    label = pair.split("=", 1)[0]
    d = os.path.join(out, label)
    _, small = calls_and_inclusive(os.path.join(d, "callgrind.solo.20000.phase"), names)
    _, large = calls_and_inclusive(os.path.join(d, "callgrind.solo.200000.phase"), names)
    per_chunk[label] = {name: (large.get(name, 0) - small.get(name, 0)) / 180000 for name in names}
labels = [pair.split("=", 1)[0] for pair in pairs]
print()
print("Marginal inclusive Ir per chunk of the path's functions (20,000 → 200,000 chunks):")
print()
print("| function | " + " | ".join(labels) + " |")
print("|---|" + "---|" * len(labels))
for title, name in PATH_FUNCTIONS:
    print(f"| {title} | " + " | ".join(f"{per_chunk[label][name]:.1f}" for label in labels) + " |")

engine = os.path.join(out, "engine", "callgrind.core.out")
if os.path.exists(engine):
    names = ["resumable_stream::engine::Engine::push_chunk", "core::rig::Rig::settle"]
    calls, inclusive = calls_and_inclusive(engine, names)
    chunks = calls.get(names[0], 0)
    if chunks:
        per = {name: inclusive.get(name, 0) / chunks for name in names}
        print()
        print(f"The engine alone (criterion's loop, {chunks:,} chunks): push_chunk "
              f"{per[names[0]]:.1f} + settle {per[names[1]]:.1f} = {sum(per.values()):.1f} Ir per chunk.")
PY
echo "results: $OUT (summary.md)" >&2
