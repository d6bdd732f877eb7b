#!/usr/bin/env bash
# A real Courier cluster on this machine.
#
#   deploy/local/cluster.sh up              # start what is not running, print addresses
#   deploy/local/cluster.sh status          # what runs, from the state directory
#   deploy/local/cluster.sh down            # stop exactly what `up` started
#   deploy/local/cluster.sh kill-node a1    # SIGKILL one database node, as if its machine died
#   deploy/local/cluster.sh start-node a1   # start it again; it rejoins as a standby
#
# Backends, each started only if nothing listens on its port yet:
#   Redis 127.0.0.1:6379, etcd 127.0.0.1:2379, Kafka-compatible broker
#   (tansu) 127.0.0.1:9092 keeping its log in a SQLite file
#   ($COURIER_STATE/kafka/tansu.db), so a broker restart loses nothing.
# Store of record: two shards of PostgreSQL 15, each a Patroni-managed pair
#   replicating synchronously, with etcd above as Patroni's DCS:
#   shard a = a1 (PostgreSQL 5432, Patroni REST 8008) + a2 (5433, 8009),
#   shard b = b1 (5442, 8018) + b2 (5443, 8019).
# Courier: comet-1 (TCP 3101, gRPC 3109, admin 3103), comet-2 (TCP 3201,
#   gRPC 3209, admin 3203), logic (HTTP 3111, gRPC 3119, admin 3113),
#   job-1 (admin 3121) and job-2 (admin 3221), from deploy/config/*.toml.
#   Every admin port serves /metrics, /healthz and /readyz (logic's HTTP
#   port the probes too).
# Logs and pids live in $COURIER_STATE (default .courier-local/ at the
# repository root), the database nodes' data, config and logs in its pg/.
# COURIER_PROFILE=debug uses a debug build (default release).
# COURIER_BROKER_STORAGE=memory runs the broker on memory:// storage: faster
#   (about twice the pushes/s, see bench/README.md), and a broker restart
#   loses its log (Courier recovers, see docs/operations.md, "A lost broker").
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
state="${COURIER_STATE:-$root/.courier-local}"
profile="${COURIER_PROFILE:-release}"
broker_storage="${COURIER_BROKER_STORAGE:-sqlite}"
config="$root/deploy/config"
pg_bin="${COURIER_PG_BIN:-/usr/lib/postgresql/15/bin}"
# These are the script's settings, not Courier's: a service reads every
# COURIER_* variable as config and refuses one it does not know.
unset COURIER_STATE COURIER_PROFILE COURIER_PG_BIN COURIER_BROKER_STORAGE
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '%s\n' "$*"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Alive and not a zombie: a process whose parent died waits for init to reap
# it, and `kill -0` would take it for a live one.
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }
wait_port() { # name port pidfile
  for _ in $(seq 1 200); do
    listening "$2" && return 0
    if ! alive "$(cat "$3")"; then
      log "error: $1 exited; see $state/$1.log"; tail -5 "$state/$1.log" || true; return 1
    fi
    sleep 0.1
  done
  log "error: $1 did not listen on $2; see $state/$1.log"; return 1
}
any_alive() { local pid; for pid in "$@"; do alive "$pid" && return 0; done; return 1; }
running() { [ -f "$state/$1.pid" ] && alive "$(cat "$state/$1.pid")"; }
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

# --- The store of record ---------------------------------------------------
# Each database node is one Patroni process that runs its own PostgreSQL.
# The node names, ports and shards below are also in deploy/config/logic.toml
# ([cluster.shards]): change both together.
pg_nodes=(a1 a2 b1 b2)
pg_shards=(a b)
declare -A pg_shard=([a1]=a [a2]=a [b1]=b [b2]=b)
declare -A pg_port=([a1]=5432 [a2]=5433 [b1]=5442 [b2]=5443)
declare -A rest_port=([a1]=8008 [a2]=8009 [b1]=8018 [b2]=8019)
# How long a shard may take to have a writable primary and a synchronous
# standby: initdb, a base backup and Patroni recording the standby, on a
# small machine that is also building Courier.
shard_timeout=180
# Filled by wait_shard, for the banner.
declare -A shard_primary=() shard_standby=()

shard_nodes() { local n; for n in "${pg_nodes[@]}"; do [ "${pg_shard[$n]}" = "$1" ] && echo "$n"; done; }
shard_url() { # shard: every host of the group, as logic.toml lists them
  local hosts=() n
  for n in $(shard_nodes "$1"); do hosts+=("127.0.0.1:${pg_port[$n]}"); done
  local IFS=,; echo "postgres://postgres@${hosts[*]}/courier"
}
known_node() {
  [ -n "${1:-}" ] && [ -n "${pg_shard[$1]:-}" ] && return
  log "error: no database node '${1:-}'; nodes: ${pg_nodes[*]}"; exit 2
}

# What running the shards takes. PostgreSQL refuses to run as root: then
# Patroni, and the postgres it starts, run as the postgres user. setpriv
# execs (runuser would fork), so the pid we record is Patroni's own.
as_pg=()
need_store() {
  need patroni "scripts/install-patroni.sh"
  need curl "apt-get install curl"
  [ -x "$pg_bin/psql" ] || { log "error: no PostgreSQL 15 in $pg_bin; scripts/install-patroni.sh"; exit 1; }
  [ "$(id -u)" -eq 0 ] || return 0
  id postgres >/dev/null 2>&1 \
    || { log "error: no postgres user to run PostgreSQL as; scripts/install-patroni.sh"; exit 1; }
  as_pg=(setpriv --reuid=postgres --regid="$(id -g postgres)" --init-groups --)
}

# A node's directory holds its patroni.yml, pgpass, socket and data/; its
# log and pid file sit beside it ($state/pg/a1.log, a1.pid) like the other
# services'. As root, the directory is handed to the postgres user, which
# must also be able to traverse every directory above it.
prepare_pg_dir() { # node
  local node=$1 dir="$state/pg/$1"
  mkdir -p "$dir"
  sed -e "s|@NAME@|$node|g" -e "s|@SCOPE@|courier-${pg_shard[$node]}|g" \
    -e "s|@PG_PORT@|${pg_port[$node]}|g" -e "s|@REST_PORT@|${rest_port[$node]}|g" \
    -e "s|@ETCD@|127.0.0.1:2379|g" -e "s|@DIR@|$dir|g" -e "s|@PG_BIN@|$pg_bin|g" \
    "$root/deploy/local/patroni.yml.template" >"$dir/patroni.yml"
  chmod 644 "$dir/patroni.yml"
  if [ ${#as_pg[@]} -gt 0 ]; then
    chmod a+x "$state" "$state/pg"
    chown "postgres:$(id -g postgres)" "$dir"
    "${as_pg[@]}" test -w "$dir" || {
      log "error: the postgres user cannot write $dir: a directory above it is closed to it;"
      log "       make it traversable or set COURIER_STATE to a directory it can reach"; exit 1
    }
  fi
}

# The postmaster of a node, from the first line of its postmaster.pid, if
# that process lives and runs on this data dir (the file outlives a killed
# postmaster, and its pid may since belong to another process).
postmaster_pid() { # node
  local data="$state/pg/$1/data" pid
  pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$data" || return 1
  echo "$pid"
}
patroni_pid() { running "pg/$1" && cat "$state/pg/$1.pid"; }

start_pg_node() { # node
  local node=$1 dir="$state/pg/$1"
  if running "pg/$node"; then log "  $node already running (Patroni pid $(patroni_pid "$node"))"; return; fi
  if listening "${pg_port[$node]}"; then
    log "  $node: something already listens on ${pg_port[$node]}, using it"; return
  fi
  prepare_pg_dir "$node"
  # A killed postmaster's pid file would make PostgreSQL refuse to start if
  # its pid is now a zombie or another process.
  if [ -f "$dir/data/postmaster.pid" ] && ! postmaster_pid "$node" >/dev/null; then
    rm -f "$dir/data/postmaster.pid"
  fi
  # setsid: Patroni leads its own process group, which its helpers
  # (initdb, pg_basebackup, pg_rewind) join, so kill-node reaches them and
  # nothing else. PostgreSQL itself runs in a session of its own. The log is
  # appended to: it tells what happened across kills and restarts.
  nohup setsid "${as_pg[@]}" env HOME="$dir" "$(command -v patroni)" "$dir/patroni.yml" \
    >>"$state/pg/$node.log" 2>&1 &
  echo $! >"$state/pg/$node.pid"
  log "  $node started (shard ${pg_shard[$node]}, PostgreSQL ${pg_port[$node]}, Patroni REST ${rest_port[$node]}, pid $!)"
}

rest_status() { # node path -> HTTP status of Patroni's REST API, 000 if no answer
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${rest_port[$1]}/$2" || true
}
rest_get() { curl -sf --max-time 2 "http://127.0.0.1:${rest_port[$1]}/$2"; }
psql_at() { # node sql: one query on the node's postgres database, tuples only
  PGCONNECT_TIMEOUT=2 timeout 5 "$pg_bin/psql" -XqtA -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "${pg_port[$1]}" -U postgres -d postgres -c "$2"
}

# A shard is ready when Patroni names a primary (GET /primary 200) that
# commits a transaction (so it has its synchronous standby), and the other
# node is the synchronous standby Patroni recorded in etcd (GET /sync 200).
# PostgreSQL streams synchronously a loop before Patroni records it, and only
# a recorded standby may be promoted: killing the primary before then would
# leave the shard without one (testkit/src/patroni.rs waits the same way).
wait_shard() { # shard
  local shard=$1 deadline=$((SECONDS + shard_timeout)) node primary standby
  while :; do
    primary='' standby=''
    for node in $(shard_nodes "$shard"); do
      [ "$(rest_status "$node" primary)" = 200 ] && primary=$node
      [ "$(rest_status "$node" sync)" = 200 ] && standby=$node
      if [ -f "$state/pg/$node.pid" ] && ! running "pg/$node"; then
        log "error: $node (Patroni) exited; see $state/pg/$node.log"
        tail -5 "$state/pg/$node.log" || true; return 1
      fi
    done
    if [ -n "$primary" ] && [ -n "$standby" ] && psql_at "$primary" 'SELECT txid_current()' >/dev/null 2>&1; then
      shard_primary[$shard]=$primary shard_standby[$shard]=$standby
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "error: shard $shard has no writable primary with a synchronous standby after ${shard_timeout}s"
      log "       (primary: ${primary:-none}, synchronous standby: ${standby:-none}); see $state/pg/*.log"
      return 1
    fi
    sleep 0.5
  done
}

# Logic creates its tables itself but not the database. The standby must
# have replayed it before logic reads history there.
create_database() { # shard
  local primary=${shard_primary[$1]}
  if [ "$(psql_at "$primary" "SELECT 1 FROM pg_database WHERE datname = 'courier'")" != 1 ]; then
    psql_at "$primary" 'CREATE DATABASE courier'
    log "  created database courier on $primary (shard $1)"
  fi
  local behind
  for _ in $(seq 1 100); do
    behind=$(psql_at "$primary" "SELECT count(*) FROM pg_stat_replication
      WHERE replay_lsn IS NULL OR replay_lsn < pg_current_wal_flush_lsn()") || behind=unknown
    [ "$behind" = 0 ] && return 0
    sleep 0.1
  done
  log "warning: a standby of shard $1 has not replayed everything yet"
}

# Patroni keeps a shard's identity in etcd. If no node of a shard has data
# (pg/ was wiped, etcd kept), that record would make every node wait for a
# primary to copy from, and none would ever bootstrap: forget it first,
# through etcd's JSON gateway (keys are base64; the range ends at '/' + 1).
forget_empty_shard() { # shard
  local node
  for node in $(shard_nodes "$1"); do
    [ -d "$state/pg/$node/data" ] && return 0
    running "pg/$node" && return 0
  done
  local key end
  key=$(printf '/courier-local/courier-%s/' "$1" | base64 -w0)
  end=$(printf '/courier-local/courier-%s0' "$1" | base64 -w0)
  curl -sf --max-time 5 -X POST http://127.0.0.1:2379/v3/kv/deleterange \
    -d "{\"key\":\"$key\",\"range_end\":\"$end\"}" >/dev/null \
    || log "warning: could not clear shard $1's old record in etcd"
}

start_store() {
  local node shard
  for shard in "${pg_shards[@]}"; do forget_empty_shard "$shard"; done
  for node in "${pg_nodes[@]}"; do start_pg_node "$node"; done
  for shard in "${pg_shards[@]}"; do
    wait_shard "$shard"
    create_database "$shard"
    log "  shard $shard ready: primary ${shard_primary[$shard]}, synchronous standby ${shard_standby[$shard]}"
  done
}

# SIGKILL to a node's Patroni (with its helpers: it leads its process
# group) and to its PostgreSQL, as a dying machine would. The postmaster's
# children each lead a session of their own, so it is stopped first (it
# forks no more), then killed with every child it has. A postmaster.pid left
# behind goes, as a reboot would leave it harmless.
kill_pg_node() { # node -> "patroni-pid postmaster-pid" ("-" for none)
  local node=$1 patroni postmaster pids=() children=()
  if patroni=$(patroni_pid "$node"); then
    if [ "$(ps -o pgid= -p "$patroni" | tr -d ' ')" = "$patroni" ]; then
      kill -KILL -- "-$patroni" 2>/dev/null || true
    else
      kill -KILL "$patroni" 2>/dev/null || true
    fi
    pids+=("$patroni")
  fi
  if postmaster=$(postmaster_pid "$node"); then
    kill -STOP "$postmaster" 2>/dev/null || true
    mapfile -t children < <(pgrep -P "$postmaster" || true)
    kill -KILL "$postmaster" "${children[@]}" 2>/dev/null || true
    pids+=("$postmaster" "${children[@]}")
  fi
  for _ in $(seq 1 50); do any_alive "${pids[@]}" || break; sleep 0.1; done
  postmaster_pid "$node" >/dev/null || rm -f "$state/pg/$node/data/postmaster.pid"
  echo "${patroni:--} ${postmaster:--}"
}

# `down`: SIGTERM makes Patroni stop its PostgreSQL (fast shutdown) and
# leave etcd cleanly. Every node is told at once, so no standby outlives
# its primary long enough to take over; whatever still runs after a minute
# is killed, so no postgres is left behind.
stop_store() {
  local node pid stopping=()
  for node in "${pg_nodes[@]}"; do
    if pid=$(patroni_pid "$node"); then kill -TERM "$pid" 2>/dev/null || true; stopping+=("$node"); fi
  done
  for node in "${stopping[@]}"; do
    pid=$(cat "$state/pg/$node.pid")
    for _ in $(seq 1 600); do alive "$pid" || break; sleep 0.1; done
    log "  stopped $node"
  done
  # A Patroni that did not stop in time, or a postgres whose Patroni died.
  for node in "${pg_nodes[@]}"; do
    if running "pg/$node" || postmaster_pid "$node" >/dev/null; then
      log "  $node did not stop cleanly; killing it"; kill_pg_node "$node" >/dev/null
    fi
    rm -f "$state/pg/$node.pid"
  done
}

# --- Commands -------------------------------------------------------------

up() {
  local engine
  case $broker_storage in
    sqlite) engine=sqlite://tansu.db ;;
    memory) engine=memory://tansu/ ;;
    *) log "error: COURIER_BROKER_STORAGE is sqlite or memory, not $broker_storage"; exit 1 ;;
  esac
  mkdir -p "$state/pg"
  need redis-server "apt-get install redis-server"
  need etcd "apt-get install etcd-server"
  need tansu "cargo install tansu --locked --features dynostore,libsql"
  need_store
  local flag=(); [ "$profile" = release ] && flag=(--release)
  log "building courier ($profile)"
  (cd "$root" && cargo build -q "${flag[@]}" --bin courier)
  local bin="$root/target/$profile/courier"

  log "backends:"
  # Redis holds sessions, presence and the room index (messages and
  # accounts are in the store of record). An append-only file, fsynced every
  # second, keeps them across a Redis restart; what one loses, the comets
  # report again when logic sees it.
  start redis 6379 redis-server --port 6379 --bind 127.0.0.1 --save "" \
    --appendonly yes --appendfsync everysec --dir "$state"
  mkdir -p "$state/etcd"
  start etcd 2379 etcd --name courier-local --data-dir "$state/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster courier-local=http://127.0.0.1:2380
  # The broker's log is a SQLite file (tansu's libsql engine) in its own
  # directory: tansu opens sqlite:// paths relative to where it runs. A
  # tansu built without libsql exits here and its log says so.
  mkdir -p "$state/kafka"
  start kafka 9092 env -C "$state/kafka" tansu broker --storage-engine "$engine" \
    --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092

  # The shards need etcd (Patroni's DCS), and logic needs the shards.
  log "store of record (PostgreSQL 15 under Patroni, logs in $state/pg/):"
  start_store

  log "courier:"
  start logic 3111 "$bin" logic --config "$config/logic.toml"
  start comet-1 3101 "$bin" comet --config "$config/comet1.toml"
  start comet-2 3201 "$bin" comet --config "$config/comet2.toml"
  start job-1 - "$bin" job --config "$config/job1.toml"
  start job-2 - "$bin" job --config "$config/job2.toml"

  local key; key=$(sed -n 's/^api_key = "\(.*\)"/\1/p' "$config/logic.toml")
  local api=http://127.0.0.1:3111/api/v1
  cat <<MSG

Courier cluster is up. State, logs and pids: $state
  Redis   redis://127.0.0.1:6379      etcd  http://127.0.0.1:2379     Kafka 127.0.0.1:9092 ($engine)
  store   shard a $(shard_url a)  primary ${shard_primary[a]}, sync standby ${shard_standby[a]}
          shard b $(shard_url b)  primary ${shard_primary[b]}, sync standby ${shard_standby[b]}
          Patroni REST a1 :8008, a2 :8009, b1 :8018, b2 :8019 (scopes courier-a, courier-b)
  logic   HTTP $api   gRPC 127.0.0.1:3119  admin http://127.0.0.1:3113
  comet-1 TCP 127.0.0.1:3101  gRPC 127.0.0.1:3109  admin http://127.0.0.1:3103
  comet-2 TCP 127.0.0.1:3201  gRPC 127.0.0.1:3209  admin http://127.0.0.1:3203
  job-1 admin http://127.0.0.1:3121, job-2 admin http://127.0.0.1:3221 (consumer group courier-job)
  /metrics, /healthz, /readyz on every admin address (the probes on logic's HTTP port too)
  API key: $key

  $bin chat --server http://127.0.0.1:3111 --user alice --password secret123 --register
  curl -X POST $api/push/all -H 'Authorization: Bearer $key' \\
       -H 'Content-Type: application/json' -d '{"op":1001,"data":"hello cluster"}'
  curl -X POST $api/users -H 'Content-Type: application/json' \\
       -d '{"username":"bob","password":"secret123"}'
  curl -X POST $api/push/users -H 'Authorization: Bearer $key' \\
       -H 'Content-Type: application/json' -d '{"uids":["bob"],"data":"hi bob"}'
  curl -H 'Authorization: Bearer $key' $api/users/bob/messages
  curl -H 'Authorization: Bearer $key' $api/admin/store     # shards, nodes, lag

  Fail a database node: $0 kill-node a1; bring it back: $0 start-node a1
MSG
}

# One line per database node: its shard, its role and state as its
# Patroni reports them (GET /patroni), how it replicates (from its
# primary's pg_stat_replication: state, sync or async, WAL not yet replayed
# and the replay delay), its timeline, and its pids.
store_status() {
  local node shard primary rest role pstate timeline detail postmaster
  declare -A replication=()
  for shard in "${pg_shards[@]}"; do
    primary=''
    for node in $(shard_nodes "$shard"); do
      [ "$(rest_status "$node" primary)" = 200 ] && primary=$node
    done
    [ -n "$primary" ] || continue
    while IFS='|' read -r node detail; do
      [ -n "$node" ] && replication[$node]=$detail
    done < <(psql_at "$primary" "SELECT application_name, state || ' ' || sync_state
        || ', ' || coalesce(pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), '?')
        || ' behind, replay lag ' || coalesce(round(extract(epoch FROM replay_lag) * 1000, 1), 0) || ' ms'
      FROM pg_stat_replication" 2>/dev/null || true)
  done
  log "store of record (PostgreSQL under Patroni; logs in $state/pg/):"
  for node in "${pg_nodes[@]}"; do
    rest=$(rest_get "$node" patroni 2>/dev/null || true)
    role=$(sed -n 's/.*"role": *"\([^"]*\)".*/\1/p' <<<"$rest")
    pstate=$(sed -n 's/^{"state": *"\([^"]*\)".*/\1/p' <<<"$rest")
    timeline=$(sed -n 's/.*"timeline": *\([0-9]*\).*/\1/p' <<<"$rest")
    case $role in
      primary|master)
        role=primary
        detail=$(psql_at "$node" "SELECT CASE WHEN pg_is_in_recovery() THEN 'in recovery' ELSE 'writable' END" 2>/dev/null) \
          || detail='no SQL answer' ;;
      replica) role=standby detail=${replication[$node]:-not streaming from a primary} ;;
      '') role=down detail="Patroni REST :${rest_port[$node]} does not answer" ;;
      *) detail='' ;;
    esac
    [ -n "$pstate" ] && detail="$pstate, $detail"
    [ -n "$timeline" ] && detail="$detail, timeline $timeline"
    postmaster=$(postmaster_pid "$node" || echo -)
    printf '  %-3s shard %s  :%s  %-8s %s  (Patroni pid %s, postmaster pid %s)\n' \
      "$node" "${pg_shard[$node]}" "${pg_port[$node]}" "$role" "$detail" \
      "$(patroni_pid "$node" || echo -)" "$postmaster"
  done
}

status() {
  [ -d "$state" ] || { log "not started (no $state)"; return; }
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    local name; name=$(basename "$f" .pid)
    if alive "$(cat "$f")"; then log "  $name running (pid $(cat "$f"))"
    else log "  $name stopped"; fi
  done
  store_status
}

stop() { # name...: SIGTERM, then SIGKILL after 10 s
  local name f pid
  for name in "$@"; do
    f="$state/$name.pid"
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if alive "$pid"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "  stopped $name"
    fi
    rm -f "$f"
  done
}

down() {
  [ -d "$state" ] || { log "nothing to stop"; return; }
  # Courier first (comets drain, jobs commit, logic's writes end), then the
  # store of record, then the backends (etcd last but one: Patroni needs it
  # to leave cleanly).
  stop comet-1 comet-2 job-1 job-2 logic
  stop_store
  stop kafka etcd redis
}

kill_node() { # node
  known_node "${1:-}"
  local node=$1 role pids
  role=$(rest_get "$node" patroni 2>/dev/null | sed -n 's/.*"role": *"\([^"]*\)".*/\1/p' || true)
  pids=$(kill_pg_node "$node")
  if [ "$pids" = "- -" ]; then log "$node was not running"; return; fi
  log "killed $node (shard ${pg_shard[$node]}, was ${role:-unknown}; Patroni and postmaster pids: $pids)"
  case $role in
    primary|master)
      log "its standby takes over once the leader lease (ttl 20 s) expires; until then what needs"
      log "shard ${pg_shard[$node]} (pushes to its streams, their history, logins of its users) gets 503" ;;
    replica) log "its primary drops it as synchronous standby within a second or two and goes on alone" ;;
  esac
  log "watch: $0 status; bring it back: $0 start-node $node"
}

start_node() { # node
  known_node "${1:-}"
  need_store
  mkdir -p "$state/pg"
  start_pg_node "$1"
  local shard=${pg_shard[$1]}
  log "waiting for shard $shard to have a primary and a synchronous standby"
  wait_shard "$shard"
  log "shard $shard: primary ${shard_primary[$shard]}, synchronous standby ${shard_standby[$shard]}"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  kill-node) kill_node "${2:-}" ;;
  start-node) start_node "${2:-}" ;;
  *) echo "usage: $0 up|down|status|kill-node NODE|start-node NODE  (nodes: ${pg_nodes[*]})" >&2; exit 2 ;;
esac
