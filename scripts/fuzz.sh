#!/usr/bin/env bash
# Fuzzes portcullis with cargo-fuzz (libFuzzer): each target for SECONDS (default 600), one at
# a time, one job, starting from fuzz/corpus/<target>/. New inputs go to
# fuzz/target/new-corpus/<target>/ (not committed); with --cmin they go into fuzz/corpus/<target>/,
# which is then minimised in place (`cargo fuzz cmin`), ready to commit. Prints executions per target; a crash stops with the reproducer
# in fuzz/artifacts/<target>/ (replay: cargo +nightly fuzz run -O <target> <file>).
#
#   scripts/fuzz.sh [--cmin] [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 30   (smoke run)
#
# Needs a nightly toolchain (cargo-fuzz passes -Z flags); installs it and cargo-fuzz when
# missing. Without nightly, stable works too with RUSTC_BOOTSTRAP=1 (this script falls back to
# that when `rustup toolchain install nightly` fails).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

cmin=0
if [ "${1:-}" = "--cmin" ]; then cmin=1; shift; fi
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(redirect path session_cookie login_cookie headers config)

toolchain=(+nightly)
if ! cargo +nightly --version >/dev/null 2>&1 && ! rustup toolchain install nightly --profile minimal; then
  echo "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1" >&2
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz

for t in "${targets[@]}"; do
  if [ "$cmin" = 1 ]; then dirs=("corpus/$t"); else dirs=("target/new-corpus/$t" "corpus/$t"); fi
  mkdir -p "${dirs[@]}"
  echo "==> fuzzing $t for ${secs}s"
  log="target/fuzz-$t.log"
  mkdir -p target
  if ! cargo "${toolchain[@]}" fuzz run -O "$t" "${dirs[@]}" -- \
    -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "$t: failure (log $PWD/$log), reproducer in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units)' "$log" || true
  if [ "$cmin" = 1 ]; then
    cargo "${toolchain[@]}" fuzz cmin -O "$t" "corpus/$t" -- -set_cover_merge=1 -use_counters=0 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' || true
  fi
done
