#!/usr/bin/env bash
# Installs whatever the tests need that this machine lacks, then runs every
# test of the workspace. This is the README's test command and what CI runs.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -p courier-proto   # extra args go to the test runner
#
# Needs: Debian/Ubuntu with apt-get (root or sudo) and a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

# 1. Debian packages: the real servers the tests start, and protoc.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v nats-server >/dev/null || missing+=(nats-server)  # bench peer
command -v chromium >/dev/null || missing+=(chromium)        # the browser test
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v systemd-analyze >/dev/null || missing+=(systemd)  # tests/deploy_units.rs
command -v promtool >/dev/null || missing+=(prometheus)     # tests/prometheus.rs (prometheus, promtool)
command -v cc >/dev/null || missing+=(build-essential)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)  # librdkafka's TLS and SASL
command -v pkg-config >/dev/null || missing+=(pkg-config)  # finds OpenSSL for librdkafka
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. PostgreSQL 15 and Patroni (the store of record's tests start real
#    servers and Patroni-managed replication groups): scripts/install-patroni.sh
#    installs what is missing and does nothing when all is there.
scripts/install-patroni.sh

# 3. The Kafka-compatible broker (tansu): a ~15 minute build the first time.
#    `memory://` storage for speed, `sqlite://` (feature libsql) for the
#    tests whose broker must keep its log across a restart; cargo records
#    the features a binary was built with, so an older build without
#    libsql is rebuilt.
export PATH="$HOME/.cargo/bin:$PATH"
tansu_features() {
  python3 - <<'PY' 2>/dev/null
import json, os
installs = json.load(open(os.path.expanduser("~/.cargo/.crates2.json")))["installs"]
print(" ".join(f for k, v in installs.items() if k.startswith("tansu ") for f in v["features"]))
PY
}
if ! command -v tansu >/dev/null || [[ " $(tansu_features) " != *" libsql "* ]]; then
  log "installing tansu (Kafka-compatible broker; takes a while the first time)"
  cargo install tansu --locked --features dynostore,libsql
fi

# 4. The browser test's driver, from its lockfile.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  log "installing playwright-core (npm ci)"
  npm ci --prefix tests/browser --no-audit --no-fund
fi

# 4b. kubernetes-validate (PyPI), which checks deploy/kubernetes/ against
#     the Kubernetes API's schemas, in its own venv.
kv_venv="${XDG_CACHE_HOME:-$HOME/.cache}/courier-kubernetes-validate"
if [ ! -x "$kv_venv/bin/kubernetes-validate" ]; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "installing python3-venv"
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  log "installing kubernetes-validate into $kv_venv"
  rm -rf "$kv_venv"
  python3 -m venv "$kv_venv"
  "$kv_venv/bin/pip" install --quiet kubernetes-validate
fi
# Not COURIER_*: every COURIER_ variable is a setting to the processes the
# tests start, and an unknown one stops them.
export KUBERNETES_VALIDATE="$kv_venv/bin/kubernetes-validate"

# 5. The test runner: nextest runs each test in its own process with a
#    timeout, and the heavy cluster tests alone (.config/nextest.toml).
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# 6. Every test. A clean run gains nothing from incremental compilation, and
#    its files double the size of target/ (set CARGO_INCREMENTAL=1 to keep it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
log "running tests with cargo nextest"
cargo nextest run --workspace --all-targets "$@"
# nextest does not run doctests.
cargo test --workspace --doc "$@"

# 7. The HTTP API against its OpenAPI document (schemathesis, from PyPI,
#    against a live `courier up`), then fuzzing, bounded: every target of
#    fuzz/ from its seeds, for FUZZ_SECONDS each (scripts/fuzz.sh). Only on
#    a full run.
if [ "$#" -eq 0 ]; then
  log "checking the HTTP API against its OpenAPI document (schemathesis)"
  scripts/schemathesis.sh
  FUZZ_SECONDS="${FUZZ_SECONDS:-15}" scripts/fuzz.sh
fi
