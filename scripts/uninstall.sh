#!/bin/sh
# Removes what scripts/install.sh installed. See docs/install-vm.md.
set -eu

usage() {
  cat <<'EOF'
Usage: scripts/uninstall.sh [--prefix DIR] [--purge] [--help]

Stops and disables loupe.service (when systemd is running), then removes
  PREFIX/bin/loupe, PREFIX/share/loupe/, /etc/systemd/system/loupe.service
and /etc/loupe/loupe.env if it is unchanged from the shipped defaults. A
changed settings file is kept unless --purge is given.

Options:
  --prefix DIR   the --prefix given to install.sh [default: /usr/local]
  --purge        remove /etc/loupe/loupe.env even if it was changed
  -h, --help     show this help

Environment:
  DESTDIR        remove the files staged under this directory instead; nothing
                 is stopped or disabled
EOF
}

die() {
  echo "uninstall.sh: $*" >&2
  exit 2
}

prefix="/usr/local"
purge=no
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --purge) purge=yes; shift ;;
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

if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run as root, or set DESTDIR to remove staged files" >&2
  exit 1
fi

unit="$destdir/etc/systemd/system/loupe.service"
env_file="$destdir/etc/loupe/loupe.env"
default_env="$destdir$prefix/share/loupe/loupe.env.default"
removed=0
kept=no

if [ -z "$destdir" ] && [ -d /run/systemd/system ] && [ -e "$unit" ]; then
  if systemctl disable --now loupe.service; then
    echo "stopped and disabled loupe.service"
  else
    echo "uninstall.sh: 'systemctl disable --now loupe.service' failed; removing the files anyway" >&2
  fi
fi

remove() {
  if [ -e "$1" ] || [ -L "$1" ]; then
    rm -f "$1"
    echo "removed $1"
    removed=$((removed + 1))
  fi
}

if [ -e "$env_file" ]; then
  if [ "$purge" = yes ]; then
    remove "$env_file"
  elif [ -e "$default_env" ] && cmp -s "$env_file" "$default_env"; then
    remove "$env_file"
  else
    echo "kept $env_file: it differs from the shipped defaults (use --purge to remove it)"
    kept=yes
  fi
fi
remove "$unit"
remove "$destdir$prefix/bin/loupe"
remove "$default_env"
for dir in "$destdir$prefix/share/loupe" "$destdir/etc/loupe"; do
  if [ -d "$dir" ] && rmdir "$dir" 2>/dev/null; then
    echo "removed $dir/"
  fi
done

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
elif [ -z "$destdir" ]; then
  echo "systemd is not running here: stop a loupe started by hand yourself (e.g. kill -TERM <pid>)."
fi
if [ "$removed" -eq 0 ] && [ "$kept" = no ]; then
  echo "nothing to remove: Loupe is not installed under ${destdir:-/} with prefix $prefix"
fi
