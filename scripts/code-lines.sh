#!/usr/bin/env bash
# Lines of code (not blank, not comments) of each driver's src/, and of the shared
# driver layer and the core, as docs/drivers.md and the README quote them:
#   bash scripts/code-lines.sh > docs/code-lines.txt
set -euo pipefail
cd "$(dirname "$0")/.."
count() {
  # Every .rs file under $1; lines that are neither blank nor `//` comments.
  find "$1" -name '*.rs' -print0 | xargs -0 cat | grep -v '^\s*//' | grep -cv '^\s*$'
}
total() { find "$1" -name '*.rs' -print0 | xargs -0 cat | wc -l; }
printf '%-32s %6s %6s\n' crate code lines
for dir in adapters/tokio/src adapters/smol/src adapters/async-std/src adapters/blocking/src adapters/axum/src adapters/driver/src src; do
  [ -d "$dir" ] || continue
  printf '%-32s %6s %6s\n' "$dir" "$(count "$dir")" "$(total "$dir")"
done
