#!/bin/bash
# packaging/systemd/loupe.service through systemd's own parser
# (systemd-analyze verify): it must load without a single warning, and the
# settings systemd parsed must be the ones written, since systemd silently
# drops a capability name it does not know.
# Usage: verify_unit.sh SOURCE_DIR LOUPE_BINARY
set -euo pipefail
src=$1
binary=$(realpath "$2")
unit_src="$src/packaging/systemd/loupe.service"
command -v systemd-analyze >/dev/null || { echo "systemd-analyze is missing (apt-get install systemd)"; exit 1; }

work=$(mktemp -d /tmp/loupe-verify-XXXXXX)
trap 'rm -rf "$work"' EXIT
# verify also checks that ExecStart= exists: point it at the built binary,
# the one line changed.
sed "s#^ExecStart=/usr/local/bin/loupe #ExecStart=$binary #" "$unit_src" >"$work/loupe.service"
grep -q "^ExecStart=$binary " "$work/loupe.service" || { echo "FAIL: ExecStart= not found in the unit"; exit 1; }

fail=0
# systemd-analyze must not need a running systemd; it loads the unit and
# what it depends on from the system's unit directories.
out=$(cd "$work" && systemd-analyze verify "$work/loupe.service" 2>&1) || {
  echo "FAIL: systemd-analyze verify exited non-zero:"; echo "$out"; exit 1; }
if grep -F "loupe.service" <<<"$out"; then
  echo "FAIL: systemd-analyze verify warned about the unit (above)"
  fail=1
fi

# The unit as systemd parsed it (the debug dump of verify).
dump=$(cd "$work" && SYSTEMD_LOG_LEVEL=debug systemd-analyze verify "$work/loupe.service" 2>&1 |
  awk '/-> Unit loupe.service:/ {on = 1} on')
[ -n "$dump" ] || { echo "FAIL: no parsed dump of loupe.service from systemd-analyze"; exit 1; }

parsed() {  # the value systemd shows for a setting
  sed -n "s/^[[:space:]]*$1: //p" <<<"$dump" | head -1
}
sorted_words() { tr ' ' '\n' | sed '/^$/d' | tr '[:upper:]' '[:lower:]' | sort | tr '\n' ' '; }

written=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit_src" | sorted_words)
for setting in CapabilityBoundingSet AmbientCapabilities; do
  got=$(parsed "$setting" | sorted_words)
  if [ "$got" != "$written" ]; then
    echo "FAIL: systemd parsed $setting as '$got', the unit writes '$written'"
    fail=1
  fi
done
expect() {
  local got
  got=$(parsed "$1")
  if [ "$got" != "$2" ]; then
    echo "FAIL: systemd parsed $1 as '$got', expected '$2'"
    fail=1
  fi
}
# systemd 252 leaves NoNewPrivileges= and RestrictAddressFamilies= out of
# this dump; the silence of verify above covers their syntax.
expect DynamicUser yes
expect ProtectSystem strict
expect ProtectHome yes
expect PrivateTmp yes
expect MemoryDenyWriteExecute yes
expect LockPersonality yes
expect EnvironmentFile "-/etc/loupe/loupe.env"
expect LimitMEMLOCK 18446744073709551615
expect StateDirectory loupe

# No ProtectProc=/ProcSubset=: Loupe reads every process's /proc entry.
for forbidden in ProtectProc ProcSubset; do
  if grep -q "^$forbidden=" "$unit_src"; then
    echo "FAIL: $forbidden= would hide the processes Loupe traces"
    fail=1
  fi
done

[ "$fail" -eq 0 ] && echo "PASS: systemd-analyze verify is silent and parsed the unit as written"
exit "$fail"
