#!/usr/bin/env bash
# RSS per idle authenticated WebSocket connection (`courier.json`) on
# `courier up`: N sockets opened by bench/ws_conns.mjs (Node 20+), the
# process's RSS growth divided by N. Ports 3111/3102 must be free.
#
#   bench/ws_rss.sh [N] [courier binary]     # default 2000, target/debug/courier
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-2000}"
bin="${2:-target/debug/courier}"
"$bin" up --api-key ws-rss-key > /tmp/ws_rss_up.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:3111/healthz >/dev/null && break; sleep 0.1; done
body='{"username":"wsrss","password":"secret123"}'
curl -s http://127.0.0.1:3111/api/v1/users -H 'Content-Type: application/json' -d "$body" >/dev/null
token=$(curl -s http://127.0.0.1:3111/api/v1/login -H 'Content-Type: application/json' -d "$body" |
  sed 's/.*"token":"\([^"]*\)".*/\1/')
before=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
URL=ws://127.0.0.1:3102/ws TOKEN="$token" N="$n" timeout 60 node --experimental-websocket bench/ws_conns.mjs |
  while read -r word ok failed; do
    [ "$word" = ready ] || continue
    sleep 1
    after=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    echo "$ok connections ($failed failed): RSS ${before} -> ${after} KiB," \
      "$(( (after - before) * 1024 / ok )) bytes per connection"
    break
  done
