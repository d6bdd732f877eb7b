#!/usr/bin/env bash
# Instructions per unit of work of one Courier service, counted by callgrind
# (steady across runs and machines, unlike seconds on a shared box).
#
#   bench/callgrind.sh fanout [members]   # comet-1: instructions per room delivery
#   bench/callgrind.sh job                # job-1: instructions per queue envelope
#
# Runs against the local cluster (deploy/local/cluster.sh up first). The
# service under test is restarted under valgrind with its usual config; the
# workload runs twice with different sizes and the difference of the two
# counts is divided by the difference of the work, so start-up, connects and
# disconnects cancel out. BENCH=path/to/courier picks the load generator
# (default: this tree's release build); the services are whatever
# cluster.sh started, so the same generator can measure an older build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="${COURIER_STATE:-$root/.courier-local}"
bench="${BENCH:-$root/target/release/courier}"
bin="$root/target/release/courier"
key=$(sed -n 's/^api_key = "\(.*\)"/\1/p' "$root/deploy/config/logic.toml")
out="$(mktemp -d /tmp/courier-callgrind.XXXXXX)"

restart_under_valgrind() { # name config
  local name=$1 config=$2
  if [ -f "$state/$name.pid" ]; then kill "$(cat "$state/$name.pid")" 2>/dev/null || true; fi
  sleep 2
  valgrind --tool=callgrind --callgrind-out-file="$out/$name.%p" \
    "$bin" "${name%-*}" --config "$root/deploy/config/$config" >"$state/$name.valgrind.log" 2>&1 &
  echo $! >"$state/$name.pid"
  echo $!
}

total() { # pid -> instructions counted since the previous dump
  callgrind_control -d "$1" >/dev/null
  sleep 1
  local f; f=$(ls -t "$out"/*."$1".* 2>/dev/null | head -1)
  sed -n 's/^summary: *//p' "$f"
}

case "${1:-}" in
  fanout)
    members=${2:-10000}
    pid=$(restart_under_valgrind comet-1 comet1.toml)
    # The generator connects only to comet-1; wait until it serves.
    for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/3101) 2>/dev/null && break; sleep 0.2; done
    sleep 3
    run() { "$bench" bench fanout --server http://127.0.0.1:3111 --api-key "$key" \
      --comet 127.0.0.1:3101 --members "$members" --pushes "$1" --rate 50 \
      --connect-concurrency 16 --handshake-retries 20 --timeout-secs 900 --json; }
    total "$pid" >/dev/null
    run 10 >"$out/small.json"; a=$(total "$pid")
    run 210 >"$out/large.json"; b=$(total "$pid")
    echo "comet-1 instructions: $a (10 pushes), $b (210 pushes) to $members members"
    echo "per delivery: $(( (b - a) / (200 * members) ))"
    ;;
  job)
    if [ -f "$state/job-2.pid" ]; then kill "$(cat "$state/job-2.pid")" 2>/dev/null || true; fi
    pid=$(restart_under_valgrind job-1 job1.toml)
    sleep 15
    run() { "$bench" bench e2e --server http://127.0.0.1:3111 --api-key "$key" \
      --count "$1" --rate 200 --timeout-secs 600; }
    total "$pid" >/dev/null
    run 500 >"$out/small.txt"; a=$(total "$pid")
    run 3000 >"$out/large.txt"; b=$(total "$pid")
    echo "job-1 instructions: $a (500 pushes), $b (3000 pushes)"
    echo "per envelope: $(( (b - a) / 2500 ))"
    ;;
  *) echo "usage: $0 fanout [members] | job" >&2; exit 2 ;;
esac
echo "callgrind files and generator output: $out"
