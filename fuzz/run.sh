#!/usr/bin/env bash
# Fuzzing for CI (docs/fuzzing.md): for each cargo-fuzz target, replay its committed
# corpus, then fuzz it for FUZZ_SECONDS (default 20). Exits non-zero on any crash, and
# prints per target the executions run and the coverage reached.
#
#   bash fuzz/run.sh                      # every target, 20 s each
#   FUZZ_SECONDS=300 bash fuzz/run.sh engine_model
#
# Runs on the stable toolchain without a sanitizer (`-s none`); set FUZZ_SANITIZER to
# `address` (needs nightly, or RUSTC_BOOTSTRAP=1) for AddressSanitizer. The corpora in
# fuzz/corpus/ are only read: what a run discovers goes to a temporary directory (kept
# with FUZZ_KEEP_CORPUS=dir). Crash inputs are written to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(decode_request catch_up replies engine_model)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi
cargo fuzz --version

# -a: debug assertions and overflow checks, as a debug build would have them.
build_flags=(-s "$sanitizer" -a)
echo "==> building the fuzz targets"
cargo fuzz build "${build_flags[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
summary=()
status=0

# The last "cov: N ft: M" pair and the executions libFuzzer reports in a log.
report() {
  local log="$1"
  local execs cov ft
  execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | awk '{print $2}')"
  echo "${execs:-?} ${cov:-?} ${ft:-?}"
}

for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  fresh="${FUZZ_KEEP_CORPUS:-$work}/$target"
  mkdir -p "$fresh"

  echo "==> $target: replaying $(find "$corpus" -type f | wc -l) corpus inputs"
  log="$work/$target-replay.log"
  if ! cargo fuzz run "${build_flags[@]}" "$target" "$fresh" "$corpus" -- \
    -runs=0 -print_final_stats=1 -timeout=10 >"$log" 2>&1; then
    tail -60 "$log"
    echo "!!! $target: a corpus input crashes" >&2
    summary+=("$target: CRASH while replaying the corpus")
    status=1
    continue
  fi
  read -r replay_execs replay_cov replay_ft <<<"$(report "$log")"

  echo "==> $target: fuzzing for ${seconds} s"
  log="$work/$target-fuzz.log"
  if ! cargo fuzz run "${build_flags[@]}" "$target" "$fresh" "$corpus" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 >"$log" 2>&1; then
    tail -60 "$log"
    echo "!!! $target: crash (input saved under fuzz/artifacts/$target/)" >&2
    summary+=("$target: CRASH while fuzzing")
    status=1
    continue
  fi
  read -r execs cov ft <<<"$(report "$log")"
  summary+=("$target: corpus replayed (cov $replay_cov, ft $replay_ft); fuzzed ${seconds} s: $execs executions, cov $cov, ft $ft")
done

echo
echo "==> fuzzing summary"
for line in "${summary[@]}"; do
  echo "    $line"
done
exit "$status"
