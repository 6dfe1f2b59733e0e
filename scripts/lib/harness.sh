# What the test scripts that start servers share (scripts/aisdk-test.sh,
# scripts/browser-test.sh): installing tools and Node packages outside the source tree,
# a work directory and the processes started, cleaned up on exit, free loopback ports,
# a private redis-server or Redis Cluster, and servers waited for until they answer.
# Sourced, not run:
#
#   source scripts/lib/harness.sh
#   harness_init NAME        # WORK, PIDS, the traps; a failed setup prints the tally line
#
# Every wait is bounded.

step() { printf '\n==> %s\n' "$*"; }
need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { need_root apt-get update -qq; apt_updated=1; }
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# harness_init NAME: a fresh $WORK (/tmp/rs-NAME.XXXXXX), removed on exit with every
# process in PIDS stopped; until `trap - ERR`, a failing command ends the run with
# `0 passed, 1 failed` so that the last line is always a tally.
harness_init() {
  HARNESS_NAME="$1"
  PIDS=()
  WORK="$(mktemp -d "/tmp/rs-$1.XXXXXX")"
  trap harness_cleanup EXIT
  trap 'echo "$HARNESS_NAME: setup failed (line $LINENO)" >&2; echo "0 passed, 1 failed"' ERR
}
harness_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}

# node_packages DIR SOURCE_DIR MODULE: the packages of SOURCE_DIR/package.json, exactly
# as its package-lock.json pins them, installed with `npm ci` in DIR (outside the tree);
# nothing is done when DIR already holds that lock and MODULE.
node_packages() {
  local dir="$1" source="$2" module="$3"
  if cmp -s "$source/package-lock.json" "$dir/package-lock.json" && [ -f "$dir/node_modules/$module/package.json" ]; then
    echo "already installed"
  else
    mkdir -p "$dir"
    cp "$source/package.json" "$source/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_redis: a private redis-server on a free port, without persistence; sets
# REDIS_URL_PRIVATE.
start_redis() {
  local port
  port="$(free_port)"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" ping >/dev/null
  REDIS_URL_PRIVATE="redis://127.0.0.1:$port"
}

# start_server NAME BINARY [REDIS_URL]: BINARY --port P on a free port (in memory, or on
# REDIS_URL), with TOKEN_MS passed on, its output in $WORK/NAME.log; waits up to 10 s
# for its /healthz and sets URL to its base.
start_server() {
  local name="$1" binary="$2" redis="${3:-}" port pid
  port="$(free_port)"
  if [ -n "$redis" ]; then
    env -u KV_URL REDIS_URL="$redis" TOKEN_MS="$TOKEN_MS" "$binary" --port "$port" >"$WORK/$name.log" 2>&1 &
  else
    env -u REDIS_URL -u KV_URL TOKEN_MS="$TOKEN_MS" "$binary" --port "$port" >"$WORK/$name.log" 2>&1 &
  fi
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { URL="http://127.0.0.1:$port"; return; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start:" >&2
  cat "$WORK/$name.log" >&2
  return 1
}

# cluster_port: a free loopback port P below 55536 whose cluster bus port P + 10000 is
# free too (a Redis Cluster node needs both).
cluster_port() {
  python3 -c '
import random, socket
for _ in range(200):
    p = random.randrange(20000, 30000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
    except OSError:
        continue
    print(p); break
else:
    raise SystemExit("no free port pair")'
}

# start_redis_cluster [N]: a private Redis Cluster of N masters (3 by default, no
# replicas, no persistence) on loopback, its 16384 slots split evenly in port order,
# formed with the cluster commands (ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET) as
# adapters/testkit/src/redis_cluster.rs does; waits up to 30 s until every node says
# cluster_state:ok and knows every node. Sets REDIS_CLUSTER_URLS_PRIVATE (comma-separated
# redis:// URLs) and REDIS_CLUSTER_PORTS (an array).
start_redis_cluster() {
  local n="${1:-3}" i port dir first last per ok
  per=$((16384 / n))
  REDIS_CLUSTER_PORTS=()
  dir="$WORK/cluster"
  mkdir -p "$dir"
  for i in $(seq 0 $((n - 1))); do
    port="$(cluster_port)"
    REDIS_CLUSTER_PORTS+=("$port")
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "nodes-$port.conf" --save '' --appendonly no \
      --dir "$dir" >"$dir/redis-$port.log" 2>&1 &
    PIDS+=("$!")
  done
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$port" ping >/dev/null
  done
  for i in $(seq 0 $((n - 1))); do
    port="${REDIS_CLUSTER_PORTS[$i]}"
    first=$((i * per))
    if [ "$i" -eq $((n - 1)) ]; then last=16383; else last=$(((i + 1) * per - 1)); fi
    redis-cli -p "$port" cluster addslotsrange "$first" "$last" >/dev/null
    redis-cli -p "$port" cluster set-config-epoch $((i + 1)) >/dev/null
    [ "$i" -eq 0 ] || redis-cli -p "$port" cluster meet 127.0.0.1 "${REDIS_CLUSTER_PORTS[0]}" >/dev/null
  done
  for _ in $(seq 1 300); do
    ok=1
    for port in "${REDIS_CLUSTER_PORTS[@]}"; do
      redis-cli -p "$port" cluster info 2>/dev/null | tr -d '\r' |
        grep -qx "cluster_state:ok" || { ok=0; break; }
      redis-cli -p "$port" cluster info 2>/dev/null | tr -d '\r' |
        grep -qx "cluster_known_nodes:$n" || { ok=0; break; }
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then echo "the Redis Cluster did not reach cluster_state:ok" >&2; return 1; fi
  REDIS_CLUSTER_URLS_PRIVATE="$(printf 'redis://127.0.0.1:%s,' "${REDIS_CLUSTER_PORTS[@]}")"
  REDIS_CLUSTER_URLS_PRIVATE="${REDIS_CLUSTER_URLS_PRIVATE%,}"
}
