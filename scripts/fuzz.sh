#!/bin/sh
# Builds the libFuzzer targets (tests/fuzz, ASan + UBSan, clang) and runs
# them: first every kept regression input once, then each target for
# LOUPE_FUZZ_SECONDS seconds from its seed corpus. Exits non-zero on any
# crash, hang, leak or sanitizer report and prints the reproducer's path.
#
#   scripts/fuzz.sh                  all targets, 20 s each (part of scripts/test.sh)
#   LOUPE_FUZZ_SECONDS=3600 scripts/fuzz.sh http1     one target, one hour
#
# Environment: BUILD_DIR (default build-fuzz), LOUPE_FUZZ_SECONDS (20),
# LOUPE_FUZZ_JOBS (1: parallel fuzzing processes per target),
# LOUPE_FUZZ_CORPUS (a directory kept between runs; default a fresh
# scratch directory per target). tests/fuzz/README.md has more.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD_DIR=${BUILD_DIR:-build-fuzz}
SECONDS_EACH=${LOUPE_FUZZ_SECONDS:-20}
JOBS=${LOUPE_FUZZ_JOBS:-1}
ALL_TARGETS="http1 http2 postgres mysql redis conn_tracker"
TARGETS=${*:-$ALL_TARGETS}

# Largest input per target: a few requests and responses of each protocol,
# or a few connections' worth of syscalls for the tracker.
max_len() {
  case "$1" in
    http1) echo 8192 ;;
    http2) echo 16384 ;;
    postgres|mysql|redis) echo 8192 ;;
    conn_tracker) echo 16384 ;;
    *) echo "fuzz.sh: unknown target '$1' (targets: $ALL_TARGETS)" >&2; exit 2 ;;
  esac
}
for t in $TARGETS; do max_len "$t" >/dev/null; done
case "$SECONDS_EACH" in ''|*[!0-9]*)
  echo "fuzz.sh: LOUPE_FUZZ_SECONDS must be a whole number of seconds, not '$SECONDS_EACH'" >&2
  exit 2 ;;
esac

# CC/CXX only count when the directory is first configured; the top-level
# CMakeLists.txt refuses LOUPE_BUILD_FUZZ with any other compiler.
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLOUPE_BUILD_FUZZ=ON -DLOUPE_BUILD_TESTS=OFF -DLOUPE_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target fuzz_all

FUZZ_DIR="$BUILD_DIR/tests/fuzz"
ARTIFACTS="$ROOT/$BUILD_DIR/fuzz-artifacts"
mkdir -p "$ARTIFACTS"
# halt_on_error: the first report ends the run; UBSan reports carry a stack.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=""
for t in $TARGETS; do
  bin="$FUZZ_DIR/${t}_fuzzer"
  len=$(max_len "$t")
  log="$ARTIFACTS/$t.log"

  regressions="tests/fuzz/regressions/$t"
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    echo "== $t: regression inputs in $regressions"
    # Every file once, as a plain input list (no fuzzing).
    if ! "$bin" -timeout=25 -rss_limit_mb=2048 "$regressions"/* >"$log" 2>&1; then
      tail -n 40 "$log"
      echo "fuzz.sh: $t fails on a kept regression input (above); log: $log" >&2
      failed="$failed $t"
      continue
    fi
  fi

  corpus=${LOUPE_FUZZ_CORPUS:-}
  if [ -n "$corpus" ]; then
    corpus="$corpus/$t"
    mkdir -p "$corpus"
  else
    corpus=$(mktemp -d "${TMPDIR:-/tmp}/loupe-fuzz-$t.XXXXXX")
  fi
  dict=""
  [ -f "tests/fuzz/dicts/$t.dict" ] && dict="-dict=tests/fuzz/dicts/$t.dict"
  rm -f "$ARTIFACTS/$t-"*
  echo "== $t: fuzzing for ${SECONDS_EACH}s (max_len $len, $JOBS job(s))"
  # New inputs go to the first corpus directory; the seeds stay as built.
  if [ "$JOBS" -gt 1 ]; then
    set -- -fork="$JOBS" -ignore_crashes=0 -ignore_timeouts=0 -ignore_ooms=0
  else
    set --
  fi
  status=0
  "$bin" "$@" -max_total_time="$SECONDS_EACH" -max_len="$len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t-" $dict \
    "$corpus" "$FUZZ_DIR/seeds/$t" >"$log" 2>&1 || status=$?
  [ -n "${LOUPE_FUZZ_CORPUS:-}" ] || rm -rf "$corpus"
  # The last status line: executions, coverage, speed.
  grep -E '^#[0-9]+' "$log" | tail -n 1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    for artifact in "$ARTIFACTS/$t-"*; do
      [ -f "$artifact" ] || continue
      echo "fuzz.sh: $t found a failing input: $artifact" >&2
      echo "fuzz.sh: reproduce with: $bin $artifact" >&2
    done
    echo "fuzz.sh: $t failed (exit $status); log: $log" >&2
    failed="$failed $t"
  fi
done

if [ -n "$failed" ]; then
  echo "fuzz.sh: FAILED:$failed" >&2
  exit 1
fi
echo "fuzz.sh: all targets passed ($TARGETS)"
