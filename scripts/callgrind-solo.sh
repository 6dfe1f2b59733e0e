#!/usr/bin/env bash
# Instruction counts of peerbench's solo scenario, where seconds are too noisy (a
# shared machine): callgrind counts only the measured phase (the bench marks it with
# measure_start / measure_end), at 20,000 and 200,000 chunks, so the instructions per
# chunk and their marginal cost come out exactly; the page faults of the same phase
# and the chunks/s of native runs (medians of RUNS) come beside them, and the engine's
# own instructions and time per chunk in the criterion loop of benches/core.rs
# (producer_chunk/listeners/0) for reference.
#
#   scripts/callgrind-solo.sh OUT_DIR [LABEL=PEERBENCH_BINARY ...]
#
# Without binaries it builds the current tree's peerbench (a plain release build).
# env: RUNS=30 (native runs per binary, the binaries taking turns)  PEERBENCH_DIR=<repo>/../shared/peerbench
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
RUNS="${RUNS:-30}"
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
  : >"$dir/native-one-chunk.jsonl"
done
# Native runs, the binaries taking turns, so that the machine's drift hits all alike.
for _ in $(seq "$RUNS"); do
  for pair in "${binaries[@]}"; do
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    "${pair#*=}" --redis "$REDIS_URL" --scenario solo | tail -n 1 >>"$OUT/${pair%%=*}/native.jsonl"
    # A stream of one chunk: what a stream costs whatever its length (its Redis round
    # trips: INCR, SUBSCRIBE, SET "1" before the first chunk, SET "DONE" before the end).
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    "${pair#*=}" --redis "$REDIS_URL" --scenario solo --n 1 | tail -n 1 >>"$OUT/${pair%%=*}/native-one-chunk.jsonl"
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
  # And its time, natively, right after the solo runs.
  "$core" --bench 'producer_chunk/listeners/0$' --warm-up-time 1 --measurement-time 3 \
    --noplot >"$OUT/engine/criterion.txt" 2>&1
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


for pair in pairs:
    label, path = pair.split("=", 1)
    print(f"- {label}: `{path}`")
print()
print("| build | Ir per chunk, solo (20,000) | marginal Ir per chunk (20,000 → 200,000) "
      "| minor page faults (20,000) | chunks/s, median / best of native runs | ns per chunk, median / best "
      "| a one-chunk stream, ms, median / best |")
print("|---|---|---|---|---|---|---|")
for pair in pairs:
    label = pair.split("=", 1)[0]
    d = os.path.join(out, label)
    small = totals(os.path.join(d, "callgrind.solo.20000.phase"))
    large = totals(os.path.join(d, "callgrind.solo.200000.phase"))
    runs = [json.loads(line) for line in open(os.path.join(d, "native.jsonl")) if line.strip()]
    good = [r for r in runs if r.get("verified") is True]
    faults = f"{statistics.median(r['minor_faults'] for r in good):.0f}" if good else "—"
    ones = [json.loads(line) for line in open(os.path.join(d, "native-one-chunk.jsonl")) if line.strip()]
    # wall_s is rounded to the millisecond; chunks_per_s (1 / wall) is not.
    walls = [1000 / r["chunks_per_s"] for r in ones if r.get("verified") is True]
    one = f"{statistics.median(walls):.2f} / {min(walls):.2f}" if walls else "—"
    rates = [r["chunks_per_s"] for r in good]
    rate = f"{statistics.median(rates):,.0f} / {max(rates):,.0f} ({len(good)}/{len(runs)} verified)" if rates else "—"
    ns = f"{1e9 / statistics.median(rates):.0f} / {1e9 / max(rates):.0f}" if rates else "—"
    print(f"| {label} | {small / 20000:.1f} | {(large - small) / 180000:.1f} | {faults} | {rate} | {ns} | {one} |")

# Where a chunk's instructions go: inclusive Ir of the path's functions per chunk, in
# the scenario itself (20,000 chunks) and marginal between the two runs (what 180,000
# more chunks cost; a Vec growing past malloc's mmap threshold is moved by mremap,
# without a copy, so growth shows at 20,000 and barely at the margin).
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
READER = "<resumable_stream_driver::face::ResumableStream as futures_core::stream::Stream>::poll_next"
columns = []
for pair in pairs:
    label = pair.split("=", 1)[0]
    d = os.path.join(out, label)
    _, small = calls_and_inclusive(os.path.join(d, "callgrind.solo.20000.phase"), names)
    _, large = calls_and_inclusive(os.path.join(d, "callgrind.solo.200000.phase"), names)
    small["total"] = totals(os.path.join(d, "callgrind.solo.20000.phase"))
    large["total"] = totals(os.path.join(d, "callgrind.solo.200000.phase"))
    for values in (small, large):
        values["rest"] = values["total"] - values.get(names[0], 0) - values.get(READER, 0)
    keys = names + ["rest", "total"]
    columns.append((f"{label}, 20,000", {n: small.get(n, 0) / 20000 for n in keys}))
    columns.append((f"{label}, marginal", {n: (large.get(n, 0) - small.get(n, 0)) / 180000 for n in keys}))
print()
print("Inclusive Ir per chunk of the path's functions (malloc, realloc, memcpy and memcmp")
print("are counted within the rows above them, wherever they are called):")
print()
print("| function | " + " | ".join(title for title, _ in columns) + " |")
print("|---|" + "---|" * len(columns))
ROWS = PATH_FUNCTIONS + [
    ("everything else: the bench's reading loop (its check of every byte), tokio", "rest"),
    ("the measured phase, all of it", "total"),
]
for title, name in ROWS:
    cells = [f"{values[name]:.1f}".replace("-0.0", "0.0") for _, values in columns]
    print(f"| {title} | " + " | ".join(cells) + " |")

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
criterion = os.path.join(out, "engine", "criterion.txt")
if os.path.exists(criterion):
    times = re.search(r"time:\s+\[([\d.]+) (\w+) ([\d.]+) (\w+) ([\d.]+) (\w+)\]", open(criterion).read())
    if times:
        print(f"Its time natively (criterion, median of its estimate): {times.group(3)} {times.group(4)} per chunk.")
PY
echo "results: $OUT (summary.md)" >&2
