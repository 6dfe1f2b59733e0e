#!/usr/bin/env bash
# The interop suite: our CLI, the npm library (resumable-stream 2.2.13 on node-redis
# 4.7.1) and the PyPI port (resumable-stream 0.2.0) produce and resume each other's
# streams on one private redis-server.
#
# Installs what it needs, idempotently and outside the source tree: redis-server (apt),
# the Node libraries in $RS_INTEROP_NODE_DIR (default /tmp/rs-interop-node), a venv in
# $RS_INTEROP_VENV (default /tmp/rs-interop-venv). Builds our CLI in release mode
# (honouring CARGO_TARGET_DIR), starts one redis-server on a free 127.0.0.1 port, runs
# tests/interop/run.py, stops the server. Before the matrix it checks the matrix's
# judge (tests/interop/classify.py, the known differences) with test_classify.py. The
# last line is `N passed, M failed`; the exit status is non-zero if anything failed.
# Extra arguments go to run.py (e.g. `--producers python`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
# run.py imports classify.py: no __pycache__ in the source tree.
export PYTHONDONTWRITEBYTECODE=1

NODE_DIR="${RS_INTEROP_NODE_DIR:-/tmp/rs-interop-node}"
VENV="${RS_INTEROP_VENV:-/tmp/rs-interop-venv}"
NODE_VERSION=2.2.13
NODE_REDIS_VERSION=4.7.1
PY_VERSION=0.2.0

step() { printf '\n==> %s\n' "$*"; }
need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  need_root apt-get update -qq
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

REDIS_PID=""
REDIS_DIR=""
cleanup() {
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
  if [ -n "$REDIS_DIR" ]; then rm -rf "$REDIS_DIR"; fi
}
# A setup step that fails still ends with the summary line the suite promises.
on_error() { echo "interop: setup failed (line $1)" >&2; echo "0 passed, 1 failed"; }
trap cleanup EXIT
trap 'on_error $LINENO' ERR

step "tools"
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v node >/dev/null 2>&1 || apt_install nodejs npm
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
echo "$(redis-server --version | cut -d' ' -f1-3), node $(node --version), $(python3 --version)"

step "node: resumable-stream@$NODE_VERSION + redis@$NODE_REDIS_VERSION in $NODE_DIR"
node_ok() {
  node -e '
    const dir = process.argv[1];
    const v = (name) => { try { return require(`${dir}/node_modules/${name}/package.json`).version; } catch { return null; } };
    process.exit(v("resumable-stream") === process.argv[2] && v("redis") === process.argv[3] ? 0 : 1);
  ' "$NODE_DIR" "$NODE_VERSION" "$NODE_REDIS_VERSION"
}
if node_ok; then
  echo "already installed"
else
  mkdir -p "$NODE_DIR"
  [ -f "$NODE_DIR/package.json" ] || echo '{"name":"rs-interop-node","private":true}' >"$NODE_DIR/package.json"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --save-exact \
    "resumable-stream@$NODE_VERSION" "redis@$NODE_REDIS_VERSION"
  node_ok
fi

step "python: resumable-stream==$PY_VERSION in $VENV"
py_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c '
import importlib.metadata as m, sys
sys.exit(0 if m.version("resumable-stream") == sys.argv[1] else 1)' "$PY_VERSION" 2>/dev/null
}
if py_ok; then
  echo "already installed"
else
  python3 -m venv "$VENV" || { apt_install python3-venv && python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "resumable-stream==$PY_VERSION"
  py_ok
fi

step "our CLI (release)"
cargo build --release -p resumable-stream-cli
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
CLI="$TARGET_DIR/release/resumable-stream"
[ -x "$CLI" ]

step "a private redis-server on 127.0.0.1"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
REDIS_DIR="$(mktemp -d /tmp/rs-interop-redis.XXXXXX)"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$REDIS_DIR" >"$REDIS_DIR/log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 200); do
  [ "$(redis-cli -h 127.0.0.1 -p "$PORT" PING 2>/dev/null)" = "PONG" ] && break
  sleep 0.05
done
[ "$(redis-cli -h 127.0.0.1 -p "$PORT" PING)" = "PONG" ]
echo "redis-server on port $PORT"

step "the matrix's judge (tests/interop/test_classify.py)"
python3 -m unittest discover -s tests/interop -p 'test_*.py'

step "the matrix"
trap - ERR
status=0
RS_INTEROP_NODE_DIR="$NODE_DIR" python3 tests/interop/run.py \
  --redis "redis://127.0.0.1:$PORT/" --rust "$CLI" --python "$VENV/bin/python" "$@" || status=$?
exit "$status"
