#!/bin/bash
# scripts/install.sh and scripts/uninstall.sh, staged into a DESTDIR (this
# machine's systemd is not PID 1, and the real / is not ours to change):
# files, modes, contents, idempotence, a changed settings file kept; and
# packaging/systemd/loupe.env against the variables 'loupe --help' lists.
# Usage: install_test.sh SOURCE_DIR LOUPE_BINARY
set -uo pipefail
src=$1
binary=$2
install_sh="$src/scripts/install.sh"
uninstall_sh="$src/scripts/uninstall.sh"
work=$(mktemp -d /tmp/loupe-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
check_file() {  # path mode [content-source]
  if [ ! -f "$1" ]; then
    fail "$1 is missing"
    return
  fi
  local mode
  mode=$(stat -c %a "$1")
  [ "$mode" = "$2" ] || fail "$1 has mode $mode, expected $2"
  if [ $# -ge 3 ] && ! cmp -s "$1" "$3"; then fail "$1 differs from $3"; fi
}
check_absent() { [ ! -e "$1" ] || fail "$1 should be gone"; }
run() {  # expected-status description command...
  local expected=$1 what=$2
  shift 2
  out=$("$@" 2>&1)
  local status=$?
  [ "$status" -eq "$expected" ] || fail "$what: exit $status, expected $expected; output: $out"
}
expect_output() { grep -qF -- "$1" <<<"$out" || fail "output lacks '$1'; output: $out"; }

# --- Help and bad usage -------------------------------------------------------
run 0 "install --help" "$install_sh" --help
expect_output "Usage: scripts/install.sh"
expect_output "DESTDIR"
run 0 "uninstall --help" "$uninstall_sh" --help
expect_output "--purge"
run 2 "unknown option" "$install_sh" --frobnicate
expect_output "unknown option '--frobnicate'"
run 2 "relative prefix" env DESTDIR="$work/x" "$install_sh" --binary "$binary" --prefix opt
expect_output "--prefix must be an absolute path"
run 2 "not a binary" env DESTDIR="$work/x" "$install_sh" --binary "$work/missing"
expect_output "is not an executable file"
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  # Without DESTDIR, a user other than root is refused before anything is written.
  run 1 "install as nobody" setpriv --reuid=65534 --regid=65534 --clear-groups "$install_sh" \
    --binary "$binary"
  expect_output "run as root"
fi

# --- Install ------------------------------------------------------------------
dest="$work/root"
run 0 "install" env DESTDIR="$dest" "$install_sh" --binary "$binary"
expect_output "installed $dest/usr/local/bin/loupe"
expect_output "installed $dest/etc/loupe/loupe.env"
expect_output "nothing was enabled or started"
check_file "$dest/usr/local/bin/loupe" 755 "$binary"
check_file "$dest/etc/systemd/system/loupe.service" 644 "$src/packaging/systemd/loupe.service"
check_file "$dest/etc/loupe/loupe.env" 600 "$src/packaging/systemd/loupe.env"
check_file "$dest/usr/local/share/loupe/loupe.env.default" 644 "$src/packaging/systemd/loupe.env"
[ "$(stat -c %a "$dest/etc/loupe")" = 700 ] || fail "$dest/etc/loupe is not mode 700"
"$dest/usr/local/bin/loupe" --version >/dev/null || fail "the installed binary does not run"

# Again: the same files, and the settings kept.
run 0 "install again" env DESTDIR="$dest" "$install_sh" --binary "$binary"
expect_output "kept $dest/etc/loupe/loupe.env"
check_file "$dest/usr/local/bin/loupe" 755 "$binary"
check_file "$dest/etc/systemd/system/loupe.service" 644 "$src/packaging/systemd/loupe.service"
check_file "$dest/etc/loupe/loupe.env" 600 "$src/packaging/systemd/loupe.env"
leftovers=$(find "$dest" -name '*.new')
[ -z "$leftovers" ] || fail "temporary files left: $leftovers"

# Changed settings survive an upgrade.
echo 'OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318' >>"$dest/etc/loupe/loupe.env"
cp "$dest/etc/loupe/loupe.env" "$work/changed.env"
run 0 "upgrade" env DESTDIR="$dest" "$install_sh" --binary "$binary"
check_file "$dest/etc/loupe/loupe.env" 600 "$work/changed.env"

# --- Uninstall ----------------------------------------------------------------
run 0 "uninstall" env DESTDIR="$dest" "$uninstall_sh"
expect_output "kept $dest/etc/loupe/loupe.env: it differs from the shipped defaults"
check_absent "$dest/usr/local/bin/loupe"
check_absent "$dest/etc/systemd/system/loupe.service"
check_absent "$dest/usr/local/share/loupe"
check_file "$dest/etc/loupe/loupe.env" 600 "$work/changed.env"
run 0 "uninstall again" env DESTDIR="$dest" "$uninstall_sh"
expect_output "kept $dest/etc/loupe/loupe.env"
run 0 "uninstall --purge" env DESTDIR="$dest" "$uninstall_sh" --purge
check_absent "$dest/etc/loupe"
run 0 "uninstall with nothing left" env DESTDIR="$dest" "$uninstall_sh"
expect_output "nothing to remove"

# Unchanged settings go with the rest.
run 0 "install" env DESTDIR="$dest" "$install_sh" --binary "$binary"
run 0 "uninstall" env DESTDIR="$dest" "$uninstall_sh"
check_absent "$dest/etc/loupe"
check_absent "$dest/usr/local/bin/loupe"

# --- Another prefix -------------------------------------------------------------
run 0 "install --prefix" env DESTDIR="$dest" "$install_sh" --binary "$binary" --prefix /opt/loupe
check_file "$dest/opt/loupe/bin/loupe" 755 "$binary"
# shellcheck disable=SC2016 # $LOUPE_ARGS is the unit's, literally
grep -qx 'ExecStart=/opt/loupe/bin/loupe $LOUPE_ARGS' "$dest/etc/systemd/system/loupe.service" ||
  fail "the unit's ExecStart does not follow --prefix"
check_absent "$dest/usr/local/bin/loupe"
run 0 "uninstall --prefix" env DESTDIR="$dest" "$uninstall_sh" --prefix /opt/loupe
check_absent "$dest/opt/loupe/bin/loupe"
check_absent "$dest/etc/systemd/system/loupe.service"

# --- loupe.env lists every variable loupe reads, with its default -------------
help=$("$binary" --help)
env_file="$src/packaging/systemd/loupe.env"
declare -A help_default=()
while read -r name; do help_default[$name]=""; done < <(grep -o '\[env: [A-Z0-9_]*\]' <<<"$help" |
  sed 's/\[env: \(.*\)\]/\1/')
# "  --flag ARG  help [default: X] [env: VAR]": the default of VAR.
while IFS=$'\t' read -r name default; do help_default[$name]=$default; done < <(
  sed -n 's/.*\[default: \([^]]*\)\] \[env: \([A-Z0-9_]*\)\].*/\2\t\1/p' <<<"$help")
# "Environment only:" lines, with {A,B} expanded.
while read -r pattern rest; do
  pattern=${pattern%:}
  default=$(sed -n 's/.*\[default: \([^]]*\)\].*/\1/p' <<<"$rest")
  for name in $(eval echo "$pattern"); do help_default[$name]=$default; done
done < <(sed -n '/^Environment only:/,/^$/p' <<<"$help" | grep '^  [A-Z]')
[ "${#help_default[@]}" -ge 20 ] || fail "read only ${#help_default[@]} variables from loupe --help"
for name in "${!help_default[@]}"; do
  line=$(grep -E "^#?$name=" "$env_file" | tail -1)
  if [ -z "$line" ]; then
    fail "loupe.env lacks $name (loupe --help lists it)"
    continue
  fi
  value=${line#*=}
  default=${help_default[$name]}
  if [ -n "$value" ] && [ "$value" != "$default" ]; then
    fail "loupe.env gives $name the default '$value', loupe --help says '$default'"
  fi
done
while read -r name; do
  [ "$name" = LOUPE_ARGS ] && continue
  [ -n "${help_default[$name]+set}" ] || fail "loupe.env lists $name, which loupe --help does not"
done < <(sed -n 's/^#\{0,1\}\([A-Z][A-Z0-9_]*\)=.*/\1/p' "$env_file" | sort -u)
# Shipped with every line commented out: the defaults are the binary's.
if grep -qE '^[A-Z]' "$env_file"; then fail "loupe.env sets something: $(grep -E '^[A-Z]' "$env_file")"; fi

if [ "$failures" -eq 0 ]; then
  echo "PASS: install/uninstall into a DESTDIR, and loupe.env matches loupe --help"
fi
exit $((failures > 0))
