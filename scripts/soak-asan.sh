#!/bin/sh
# A shorter soak (tests/soak) with the agent built with AddressSanitizer,
# which includes LeakSanitizer: use-after-free, overflows and double frees
# abort the agent at once, and leaks are reported when it exits on SIGTERM.
# Fails on any such report. Run as root, after the normal build (or let it
# build what it needs):
#
#   ./scripts/soak-asan.sh                            # 60 s of load
#   LOUPE_SOAK_ASAN_SECONDS=600 ./scripts/soak-asan.sh
#
# Only the agent is built with the sanitizer, into build-asan; the soak
# harness and the gRPC test programs come from the normal build ($BUILD_DIR,
# default build). The agent's log, the RSS samples and a summary are left in
# build-asan/soak/.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "soak-asan.sh: run as root (the soak loads BPF programs)" >&2
  exit 1
fi
BUILD_DIR=${BUILD_DIR:-build}
ASAN_DIR=${ASAN_BUILD_DIR:-build-asan}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$PWD/$BUILD_DIR" ;; esac
case "$ASAN_DIR" in /*) ;; *) ASAN_DIR="$PWD/$ASAN_DIR" ;; esac
JOBS=${JOBS:-$(nproc)}
OUT="$ASAN_DIR/soak"
SANITIZE="-fsanitize=address -fno-omit-frame-pointer"

# No tests or benchmarks in this tree: the agent alone.
cmake -S . -B "$ASAN_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLOUPE_BUILD_TESTS=OFF -DLOUPE_BUILD_BENCH=OFF \
  -DCMAKE_C_FLAGS="$SANITIZE" -DCMAKE_CXX_FLAGS="$SANITIZE" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address" >/dev/null
cmake --build "$ASAN_DIR" -j"$JOBS" --target loupe
[ -f "$BUILD_DIR/CMakeCache.txt" ] || cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD_DIR" -j"$JOBS" --target soak_test

mkdir -p "$OUT"
rm -f "$OUT/soak-agent.log"
status=0
# detect_leaks is on by default on x86_64 Linux; it is spelled out because
# the leak check is the point of this run. A report also makes the agent
# exit 1, which fails the harness's "exits 0 on SIGTERM" assertion. RSS is
# reported but not judged: under ASan it is mostly the quarantine of freed
# memory (256 MiB by default) and shadow memory, which grow for minutes.
ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
LOUPE_AGENT_BIN="$ASAN_DIR/agent/loupe" \
LOUPE_SOAK_OUT="$OUT" \
LOUPE_SOAK_SECONDS="${LOUPE_SOAK_ASAN_SECONDS:-60}" \
LOUPE_SOAK_CHECK_RSS=0 \
  "$BUILD_DIR/tests/soak/soak_test" || status=$?

if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY: [A-Za-z]*Sanitizer' \
     "$OUT/soak-agent.log" 2>/dev/null; then
  echo "soak-asan.sh: sanitizer report in $OUT/soak-agent.log:" >&2
  grep -E -A40 'ERROR: (AddressSanitizer|LeakSanitizer)' "$OUT/soak-agent.log" | head -200 >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "soak-asan.sh: FAILED (see $OUT/)" >&2
  exit "$status"
fi
echo "soak-asan.sh: no AddressSanitizer or LeakSanitizer report ($OUT/soak-summary.txt)"
