#!/bin/sh
# Installs everything Loupe needs to build, run and test on Debian 12.
# Used by the README's first command and by CI (.ci/run).
set -eu
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  build-essential cmake pkg-config ca-certificates \
  clang llvm libclang-rt-14-dev libbpf-dev bpftool libelf-dev zlib1g-dev \
  libabsl-dev \
  libcap-dev systemd util-linux \
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
  libcurl4-openssl-dev prometheus-cpp-dev libcivetweb-dev libnghttp2-dev nghttp2-client \
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libhttp-parser-dev \
  nginx curl wrk procps iproute2 openssl prometheus \
  postgresql postgresql-client libpq-dev mariadb-server mariadb-client libmariadb-dev \
  redis-server redis-tools \
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
# Node.js runs the independent OTLP receiver of the wire-compatibility tests;
# keep a newer one if the machine already has it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt-get install -y --no-install-recommends nodejs npm
fi
