#!/bin/sh
# Installs Loupe as a systemd service on a VM: the binary, the unit, and an
# environment file for its settings. See docs/install-vm.md.
set -eu

usage() {
  cat <<'EOF'
Usage: scripts/install.sh [--binary PATH] [--prefix DIR] [--help]

Installs Loupe as a systemd service:
  PREFIX/bin/loupe                     the agent (PREFIX is /usr/local unless --prefix)
  /etc/systemd/system/loupe.service    the unit (packaging/systemd/loupe.service)
  /etc/loupe/loupe.env                 settings, read by the unit; an existing file
                                       is never overwritten
  PREFIX/share/loupe/loupe.env.default the settings file as shipped, for comparison
then runs 'systemctl daemon-reload' and 'systemctl enable --now loupe' when
systemd is running (the service is restarted if it was running already).

Options:
  --binary PATH   install this loupe binary; without it, the checkout is built
                  (Release, in build-release/) first
  --prefix DIR    install the binary under DIR/bin; the unit's ExecStart follows
  -h, --help      show this help

Environment:
  DESTDIR         stage every file under this directory instead of /; nothing is
                  enabled or started (for packaging and tests)
  JOBS            parallel build jobs [default: the number of CPUs]

Run it again to upgrade: the binary and the unit are replaced, the settings kept.
scripts/uninstall.sh removes what this installed.
EOF
}

die() {
  echo "install.sh: $*" >&2
  exit 2
}

binary=""
prefix="/usr/local"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
    --binary=*) binary=${1#--binary=}; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
case "$prefix" in
  /*) ;;
  *) die "--prefix must be an absolute path, not '$prefix'" ;;
esac
prefix=${prefix%/}
destdir=${DESTDIR:-}
destdir=${destdir%/}
repo=$(cd "$(dirname "$0")/.." && pwd)

if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (it writes under $prefix and /etc), or set DESTDIR to stage the files" >&2
  exit 1
fi

if [ -z "$binary" ]; then
  echo "Building Loupe (Release) in $repo/build-release ..."
  cmake -S "$repo" -B "$repo/build-release" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$repo/build-release" --target loupe -j"${JOBS:-$(nproc)}"
  binary="$repo/build-release/agent/loupe"
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
  die "'$binary' is not an executable file"
fi
"$binary" --version >/dev/null 2>&1 || die "'$binary --version' failed: is it a loupe binary for this machine?"

bin_dir="$destdir$prefix/bin"
share_dir="$destdir$prefix/share/loupe"
unit_dir="$destdir/etc/systemd/system"
conf_dir="$destdir/etc/loupe"

install -d -m 0755 "$bin_dir" "$share_dir" "$unit_dir"
install -d -m 0700 "$conf_dir"
# Copy then rename: a running agent keeps its binary, the next start gets the new one.
install -m 0755 "$binary" "$bin_dir/loupe.new"
mv -f "$bin_dir/loupe.new" "$bin_dir/loupe"
echo "installed $bin_dir/loupe"

sed "s#^ExecStart=/usr/local/bin/loupe#ExecStart=$prefix/bin/loupe#" \
  "$repo/packaging/systemd/loupe.service" >"$unit_dir/loupe.service.new"
chmod 0644 "$unit_dir/loupe.service.new"
mv -f "$unit_dir/loupe.service.new" "$unit_dir/loupe.service"
echo "installed $unit_dir/loupe.service"

install -m 0644 "$repo/packaging/systemd/loupe.env" "$share_dir/loupe.env.default"
# The settings may hold credentials (OTEL_EXPORTER_OTLP_HEADERS): root only.
# systemd reads the file as root before starting the service.
if [ -e "$conf_dir/loupe.env" ]; then
  echo "kept $conf_dir/loupe.env (existing settings are never overwritten; the shipped" \
    "defaults are in $share_dir/loupe.env.default)"
else
  install -m 0600 "$repo/packaging/systemd/loupe.env" "$conf_dir/loupe.env"
  echo "installed $conf_dir/loupe.env (every setting commented out with its default)"
fi

if [ -n "$destdir" ]; then
  echo "Staged under $destdir; nothing was enabled or started."
  exit 0
fi
# sd_booted(3): systemd is the init system when this directory exists.
if [ -d /run/systemd/system ]; then
  was_active=no
  systemctl is-active --quiet loupe.service && was_active=yes
  systemctl daemon-reload
  systemctl enable --now loupe.service
  if [ "$was_active" = yes ]; then
    systemctl restart loupe.service
    echo "restarted loupe.service with the new binary and unit"
  fi
  echo "loupe.service is enabled and started: 'systemctl status loupe', 'journalctl -u loupe'."
  echo "Edit /etc/loupe/loupe.env, then 'systemctl restart loupe'."
else
  echo "systemd is not running here (PID 1 is '$(cat /proc/1/comm 2>/dev/null || echo unknown)')," \
    "so loupe.service was installed but not enabled or started."
  echo "To run the agent by hand, as root, with the same settings:"
  echo "  sh -c 'set -a; . /etc/loupe/loupe.env; set +a; exec $prefix/bin/loupe \$LOUPE_ARGS'"
fi
