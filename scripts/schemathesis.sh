#!/usr/bin/env bash
# Fuzzes logic's HTTP API against its own OpenAPI document with schemathesis:
# starts `courier up` (embedded backends, every port picked by the OS, all on
# 127.0.0.1), waits for /healthz, runs `st run` on
# /api/v1/openapi.json with a fixed API key, and stops courier on exit.
#
# A run fails (non-zero exit) on any 5xx, any response whose status, content
# type or body the document does not declare, or a courier that dies.
#
#   scripts/schemathesis.sh                        # 30 examples per operation
#   SCHEMATHESIS_EXAMPLES=100 scripts/schemathesis.sh
#   scripts/schemathesis.sh --seed 42              # extra args go to `st run`
#
# Installs schemathesis 4 from PyPI into a venv under
# ${XDG_CACHE_HOME:-$HOME/.cache}/courier-schemathesis (and python3-venv with
# apt-get when Debian's python lacks it). Needs a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf '==> %s\n' "$*" >&2; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

examples="${SCHEMATHESIS_EXAMPLES:-30}"
api_key="schemathesis-api-key"

# 1. schemathesis, in its own venv.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/courier-schemathesis"
st="$venv/bin/st"
if ! "$st" --version >/dev/null 2>&1; then
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "installing python3-venv"
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  log "installing schemathesis into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4,<5'
fi
log "$("$st" --version)"

# 2. courier.
log "building courier"
cargo build --bin courier
courier="$root/target/debug/courier"

work=$(mktemp -d)
courier_pid=
cleanup() {
  local status=$?
  if [ -n "$courier_pid" ] && kill -0 "$courier_pid" 2>/dev/null; then
    kill -TERM "$courier_pid" 2>/dev/null || true
    # Bounded: SIGKILL after 10 s of draining.
    for _ in $(seq 1 100); do
      kill -0 "$courier_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$courier_pid" 2>/dev/null || true
    wait "$courier_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$work/courier.err" ]; then
    log "courier's last log lines:"
    tail -n 40 "$work/courier.err" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every listener on 127.0.0.1, port 0: nothing collides with another run.
log "starting courier up"
(
  cd "$work"
  exec env \
    COURIER_LOGIC__HTTP_ADDR=127.0.0.1:0 \
    COURIER_LOGIC__GRPC_ADDR=127.0.0.1:0 \
    COURIER_LOGIC__ADMIN_ADDR=127.0.0.1:0 \
    COURIER_COMET__TCP_ADDR=127.0.0.1:0 \
    COURIER_COMET__WS_ADDR=127.0.0.1:0 \
    COURIER_COMET__GRPC_ADDR=127.0.0.1:0 \
    COURIER_COMET__ADMIN_ADDR=127.0.0.1:0 \
    COURIER_JOB__ADMIN_ADDR=127.0.0.1:0 \
    RUST_LOG="${RUST_LOG:-info}" \
    "$courier" up --api-key "$api_key" </dev/null >"$work/courier.out" 2>"$work/courier.err"
) &
courier_pid=$!

# The banner names logic's address: `logic  HTTP http://127.0.0.1:PORT/api/v1`.
base=
for _ in $(seq 1 300); do
  kill -0 "$courier_pid" 2>/dev/null || { log "courier exited while starting"; exit 1; }
  base=$(grep -o 'logic  HTTP http://127\.0\.0\.1:[0-9]*' "$work/courier.out" 2>/dev/null | grep -o 'http://.*' || true)
  [ -n "$base" ] && break
  sleep 0.1
done
[ -n "$base" ] || { log "courier printed no logic address within 30 s"; exit 1; }

healthy=
for _ in $(seq 1 100); do
  if curl -fsS --max-time 2 "$base/healthz" >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.1
done
[ -n "$healthy" ] || { log "$base/healthz did not answer within 10 s"; exit 1; }
log "logic at $base"

# 3. schemathesis.
st_run() {
  (cd "$work" && timeout 600 "$st" run "$base/api/v1/openapi.json" \
    --header "Authorization: Bearer $api_key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
    "$@")
}

failed=0
# Everything but draining a comet, every phase (stateful too).
log "st run: every operation but drain_comet"
st_run --exclude-operation-id drain_comet "$@" || failed=1

# Draining: without the stateful phase, whose inferred links feed the comet
# ids of GET /nodes into {id} and would drain (stop) the only comet. The
# other phases generate ids, which never name the comet (`comet-` and 8
# random hex digits): they exercise the 401, 404 and path rejections.
log "st run: drain_comet (no stateful phase)"
st_run --include-operation-id drain_comet --phases examples,coverage,fuzzing "$@" || failed=1

if ! kill -0 "$courier_pid" 2>/dev/null; then
  log "courier died during the run"
  failed=1
elif grep -q 'comet draining' "$work/courier.err"; then
  log "the run drained the comet: the drain_comet run must not name it"
  failed=1
fi

if [ "$failed" -ne 0 ]; then
  log "schemathesis: FAILED"
  exit 1
fi
log "schemathesis: passed"
