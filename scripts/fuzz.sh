#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ (the frame decoder, Frame protobuf
# decoding, each HTTP JSON body, the read routes' query strings) and runs
# each for a bounded time, starting from the checked-in seeds in
# fuzz/seeds/<target>/. Exits non-zero if any target crashed (or hung, or ran
# out of memory), naming the target and the input libFuzzer saved.
#
#   scripts/fuzz.sh                     # every target, 20 s each
#   FUZZ_SECONDS=60 scripts/fuzz.sh     # longer
#   scripts/fuzz.sh frame_codec         # only these targets
#
# FUZZ_SANITIZER (default none) is passed to `cargo fuzz --sanitizer`. With
# none the build works on a stable toolchain; any other sanitizer needs
# -Zsanitizer, so RUSTC_BOOTSTRAP=1 is set for it.
#
# New inputs go to fuzz/corpus/<target>/ and crashes to
# fuzz/artifacts/<target>/ (both ignored by git), logs to fuzz/artifacts/logs/.
# To keep a crash as a regression input, copy it into fuzz/seeds/<target>/:
# libFuzzer runs every seed before it starts mutating.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

log() { printf '==> %s\n' "$*" >&2; }

seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"
export PATH="$HOME/.cargo/bin:$PATH"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
if [ "$sanitizer" != none ]; then
  export RUSTC_BOOTSTRAP=1
fi

# courier-proto's build needs protoc; libFuzzer itself is C++.
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v c++ >/dev/null || missing+=(build-essential)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  log "installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

log "building the fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build --sanitizer "$sanitizer"

mkdir -p artifacts/logs
failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "seeds/$target"
  log "fuzzing $target for ${seconds}s"
  out="artifacts/logs/$target.log"
  # corpus/ first: libFuzzer writes new inputs only to the first directory.
  if cargo fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$out" 2>&1; then
    grep -E '^stat::number_of_executed_units' "$out" | sed "s/^/    $target /" >&2 || true
  else
    artifact="$(grep -oE 'Test unit written to [^ ]+' "$out" | tail -n 1 | cut -d' ' -f5 || true)"
    log "FAILED $target (crash, timeout or OOM); input: ${artifact:-none saved}; log: fuzz/$out"
    grep -A 1 -E 'panicked at' "$out" | head -n 2 >&2 || true
    grep -E 'ERROR: libFuzzer' "$out" | head -n 1 >&2 || true
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  log "crashed: ${failed[*]}"
  log "reproduce: cd fuzz && cargo fuzz run --sanitizer $sanitizer TARGET ARTIFACT"
  exit 1
fi
log "no crashes in ${#targets[@]} targets"
