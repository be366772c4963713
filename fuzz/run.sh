#!/usr/bin/env bash
# Coverage-guided fuzzing of the SCIM core with cargo-fuzz (libFuzzer), for a developer or CI.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Builds every target once, then fuzzes each TARGET (default: all) for SECONDS, starting
# from a fresh corpus seeded from fuzz/seeds/<target>. Prints one line per target and exits
# non-zero if a target fails to build, panics, hangs (an input taking over 5 s) or runs out
# of memory. The failing input is kept in fuzz/artifacts/<target>/ and the log beside it.
set -uo pipefail
cd "$(dirname "$0")"

usage="usage: fuzz/run.sh SECONDS [TARGET...]"
seconds=${1:?$usage}
shift
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "$usage (SECONDS is a positive integer)" >&2; exit 2; }

# cargo-fuzz passes -Z flags (sanitizer-coverage options) that only nightly rustc accepts;
# this lets the stable toolchain accept them too.
export RUSTC_BOOTSTRAP=1

# Build mode, chosen by timing a cold build plus a 60 s run per target on 2 cores (README.md):
# a dev build (debug assertions and overflow checks on, so an overflow is a crash) whose hot
# crates Cargo.toml optimises; no AddressSanitizer, as the crate forbids unsafe code and ASan
# makes both the build and each run several times slower.
build_flags=(--dev -s none)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked >&2 || { echo "fuzz: cannot install cargo-fuzz" >&2; exit 1; }
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

mkdir -p artifacts
build_log=artifacts/build.log
started=$(date +%s)
if ! cargo fuzz build "${build_flags[@]}" >"$build_log" 2>&1; then
  grep -E '^(error|warning: unused)' -A8 "$build_log" | head -40 >&2
  for target in "${targets[@]}"; do echo "fuzz $target: build failed (see fuzz/$build_log)"; done
  exit 1
fi
echo "[fuzz] build: $(($(date +%s) - started)) s" >&2

root=$(cd .. && pwd)
failed=0
for target in "${targets[@]}"; do
  if [ ! -d "seeds/$target" ]; then
    echo "fuzz $target: no such target (seeds/$target is missing)"
    failed=1
    continue
  fi
  corpus=corpus/$target
  rm -rf "$corpus"
  mkdir -p "$corpus" "artifacts/$target"
  cp seeds/"$target"/* "$corpus"/
  log=artifacts/$target/fuzz.log
  # -timeout: one input running over 5 s is a hang; -rss_limit_mb: a blow-up is a failure too.
  cargo fuzz run "${build_flags[@]}" "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  status=$?
  if [ "$status" -eq 0 ] && grep -q '^Done [0-9]* runs' "$log"; then
    echo "fuzz $target: ok, $(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second(s)$/\1 runs in \2 s/p' "$log" | tail -n1)"
    continue
  fi
  failed=1
  input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
  if grep -q 'ERROR: libFuzzer: timeout' "$log"; then
    what="hang (an input ran over 5 s)"
  elif grep -q 'ERROR: libFuzzer: out-of-memory' "$log"; then
    what="out of memory (over 2048 MB)"
  elif grep -q ' panicked at ' "$log"; then
    # The panic line names the location; the message follows on the next line.
    what="panic $(grep -m1 -A1 ' panicked at ' "$log" | sed -e 's/^thread .* panicked at //' -e "s#$root/##" | tr '\n' ' ' | cut -c1-500)"
  elif grep -q 'has overflowed its stack' "$log"; then
    what="stack overflow $(grep -m1 'has overflowed its stack' "$log")"
  elif grep -q 'ERROR: libFuzzer: deadly signal\|ERROR: AddressSanitizer' "$log"; then
    what="crash $(grep -m1 -E 'ERROR: (libFuzzer|AddressSanitizer)' "$log")"
  else
    what="failed with status $status (see fuzz/$log)"
  fi
  echo "fuzz $target: $what"
  if [ -n "$input" ]; then
    echo "  input: fuzz/${input#"$PWD"/}"
    echo "  reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} $target ${input#"$PWD"/})"
  fi
done
exit "$failed"
