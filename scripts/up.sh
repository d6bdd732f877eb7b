#!/usr/bin/env bash
# Builds Courier (installing protoc first if this machine lacks it) and runs
# `courier up`: comet, logic and job in one process on embedded backends.
# Extra arguments go to `courier up`, e.g. `scripts/up.sh --api-key KEY`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
  sudo_cmd=(); [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi
exec cargo run --release --quiet --bin courier -- up "$@"
