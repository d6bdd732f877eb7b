#!/usr/bin/env bash
# 102,000 idle connections on a local cluster of six comets: the script's
# two plus four more, six generator processes (each under the 20,000
# open-files limit), a heartbeat every 10 s, Redis load while idle, and one
# room push to all of them. Extra arguments go to `courier bench conns`
# (e.g. --json). Needs `cargo build --release`; leaves the cluster down.
#
#   bench/run100k.sh
set -u
cd "$(dirname "$0")/.."
deploy/local/cluster.sh down >/dev/null 2>&1
deploy/local/cluster.sh up >/dev/null
pids=($(cat .courier-local/comet-1.pid) $(cat .courier-local/comet-2.pid))
comets=(--comet 127.0.0.1:3101 --comet 127.0.0.1:3201)
for n in 3 4 5 6; do
  COURIER_COMET__ID=comet-$n COURIER_COMET__TCP_ADDR=127.0.0.1:3${n}01 COURIER_COMET__WS_ADDR=127.0.0.1:3${n}02 COURIER_COMET__GRPC_ADDR=127.0.0.1:3${n}09 \
  COURIER_COMET__ADMIN_ADDR=127.0.0.1:3${n}03 \
    target/release/courier comet --config deploy/config/comet1.toml > .courier-local/comet-$n.log 2>&1 &
  echo $! > .courier-local/comet-$n.pid
  pids+=($!)
  comets+=(--comet 127.0.0.1:3${n}01)
done
# Each comet registers in etcd within a moment.
sleep 5
pidargs=()
for p in "${pids[@]}"; do pidargs+=(--comet-pid $p); done
target/release/courier bench conns --api-key local-cluster-api-key --jwt-secret local-cluster-jwt-secret-change-me-32b \
  --connections 102000 --procs 6 "${comets[@]}" "${pidargs[@]}" --redis redis://127.0.0.1:6379 \
  --idle-secs 30 --heartbeat-secs 10 --connect-concurrency 512 --timeout-secs 120 "$@"
for n in 3 4 5 6; do kill $(cat .courier-local/comet-$n.pid) 2>/dev/null; done
deploy/local/cluster.sh down >/dev/null
