#!/bin/sh
# Builds Loupe and runs the whole test suite (unit and integration). The
# integration tests load BPF programs, so this must run as root.
set -eu
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
# The OTLP receiver used by the wire-compatibility tests (npm registry).
[ -d tests/otlp_receiver/node_modules ] || npm ci --prefix tests/otlp_receiver --no-audit --no-fund
# The Kubernetes schemas and ajv of the Helm chart test (tests/charts).
[ -d tests/charts/node_modules ] || npm ci --prefix tests/charts --no-audit --no-fund
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD_DIR" -j"$(nproc)"
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 600
# A short libFuzzer run of every decoder and the connection tracker under
# ASan/UBSan (tests/fuzz/README.md), in its own clang build directory.
BUILD_DIR="$BUILD_DIR-fuzz" ./scripts/fuzz.sh
# A one-minute soak with the agent under AddressSanitizer and LeakSanitizer
# (tests/soak/README.md); the agent alone is built, in its own directory.
BUILD_DIR="$BUILD_DIR" ASAN_BUILD_DIR="$BUILD_DIR-asan" ./scripts/soak-asan.sh
