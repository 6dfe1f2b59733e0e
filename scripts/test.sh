#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs (redis-server),
# then runs formatting, lints, the core's simulation suite, the drivers' suites on a
# private redis-server (each test starts its own on a free loopback port) and on the
# in-memory backend, the doc examples, and the architecture checks.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v redis-server >/dev/null 2>&1; then
  step "installing redis-server"
  need_root apt-get update -qq
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets -- -D warnings

step "architecture: the core depends on no runtime and no Redis client"
if cargo tree -p resumable-stream -e normal --prefix none | grep -E '^(tokio|redis|async-std|async-io|smol) ' ; then
  echo "the core crate must not depend on a runtime or a Redis client" >&2
  exit 1
fi

step "tests"
cargo test --workspace --all-targets

step "doc examples"
cargo test --workspace --doc

step "rustdoc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
