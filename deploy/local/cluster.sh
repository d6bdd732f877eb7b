#!/usr/bin/env bash
# A real Courier cluster on this machine.
#
#   deploy/local/cluster.sh up       # start what is not running, print addresses
#   deploy/local/cluster.sh status   # what runs, from the state directory
#   deploy/local/cluster.sh down     # stop exactly what `up` started
#
# Backends, each started only if nothing listens on its port yet:
#   Redis 127.0.0.1:6379, etcd 127.0.0.1:2379, Kafka-compatible broker
#   (tansu) 127.0.0.1:9092.
# Courier: comet-1 (TCP 3101, gRPC 3109, admin 3103), comet-2 (TCP 3201,
#   gRPC 3209, admin 3203), logic (HTTP 3111, gRPC 3119), job-1 (admin 3121)
#   and job-2 (admin 3221), from deploy/config/*.toml. Every admin port and
#   logic's HTTP port serve /metrics, /healthz and /readyz.
# Logs and pids live in $COURIER_STATE (default .courier-local/ at the
# repository root). COURIER_PROFILE=debug uses a debug build (default release).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
state="${COURIER_STATE:-$root/.courier-local}"
profile="${COURIER_PROFILE:-release}"
config="$root/deploy/config"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '%s\n' "$*"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # name port pidfile
  for _ in $(seq 1 200); do
    listening "$2" && return 0
    if ! kill -0 "$(cat "$3")" 2>/dev/null; then
      log "error: $1 exited; see $state/$1.log"; tail -5 "$state/$1.log" || true; return 1
    fi
    sleep 0.1
  done
  log "error: $1 did not listen on $2; see $state/$1.log"; return 1
}
running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
start() { # name port command...
  local name=$1 port=$2; shift 2
  if running "$name"; then log "  $name already running (pid $(cat "$state/$name.pid"))"; return; fi
  if [ "$port" != - ] && listening "$port"; then
    log "  $name: something already listens on $port, using it"; return
  fi
  nohup "$@" >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
  if [ "$port" != - ]; then wait_port "$name" "$port" "$state/$name.pid"; fi
  log "  $name started (pid $(cat "$state/$name.pid"))"
}

need() { command -v "$1" >/dev/null || { log "error: $1 not found; $2"; exit 1; }; }

up() {
  mkdir -p "$state"
  need redis-server "apt-get install redis-server"
  need etcd "apt-get install etcd-server"
  need tansu "cargo install tansu --locked --features dynostore"
  local flag=(); [ "$profile" = release ] && flag=(--release)
  log "building courier ($profile)"
  (cd "$root" && cargo build -q "${flag[@]}" --bin courier)
  local bin="$root/target/$profile/courier"

  log "backends:"
  # An append-only file, fsynced every second: a Redis restart keeps the
  # inboxes (see the README on persistence and the delivery guarantee).
  start redis 6379 redis-server --port 6379 --bind 127.0.0.1 --save "" \
    --appendonly yes --appendfsync everysec --dir "$state"
  mkdir -p "$state/etcd"
  start etcd 2379 etcd --name courier-local --data-dir "$state/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster courier-local=http://127.0.0.1:2380
  start kafka 9092 tansu broker --storage-engine memory://tansu/ \
    --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092

  log "courier:"
  start logic 3111 "$bin" logic --config "$config/logic.toml"
  start comet-1 3101 "$bin" comet --config "$config/comet1.toml"
  start comet-2 3201 "$bin" comet --config "$config/comet2.toml"
  start job-1 - "$bin" job --config "$config/job1.toml"
  start job-2 - "$bin" job --config "$config/job2.toml"

  local key; key=$(sed -n 's/^api_key = "\(.*\)"/\1/p' "$config/logic.toml")
  cat <<MSG

Courier cluster is up. State, logs and pids: $state
  Redis   redis://127.0.0.1:6379      etcd  http://127.0.0.1:2379     Kafka 127.0.0.1:9092
  logic   HTTP http://127.0.0.1:3111/api/v1   gRPC 127.0.0.1:3119
  comet-1 TCP 127.0.0.1:3101  gRPC 127.0.0.1:3109  admin http://127.0.0.1:3103
  comet-2 TCP 127.0.0.1:3201  gRPC 127.0.0.1:3209  admin http://127.0.0.1:3203
  job-1 admin http://127.0.0.1:3121, job-2 admin http://127.0.0.1:3221 (consumer group courier-job)
  /metrics, /healthz, /readyz on every admin address and on logic's HTTP port
  API key: $key

  $bin chat --server http://127.0.0.1:3111 --user alice --password secret123 --register
  curl -X POST http://127.0.0.1:3111/api/v1/push/all -H 'Authorization: Bearer $key' \\
       -H 'Content-Type: application/json' -d '{"op":1001,"data":"hello cluster"}'
MSG
}

status() {
  [ -d "$state" ] || { log "not started (no $state)"; return; }
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    local name; name=$(basename "$f" .pid)
    if kill -0 "$(cat "$f")" 2>/dev/null; then log "  $name running (pid $(cat "$f"))"
    else log "  $name stopped"; fi
  done
}

down() {
  [ -d "$state" ] || { log "nothing to stop"; return; }
  # Courier first (comets drain, jobs commit), then the backends.
  for name in comet-1 comet-2 job-1 job-2 logic kafka etcd redis; do
    local f="$state/$name.pid"
    [ -f "$f" ] || continue
    local pid; pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "  stopped $name"
    fi
    rm -f "$f"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
