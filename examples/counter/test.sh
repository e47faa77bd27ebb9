#!/usr/bin/env bash
# Drives the counter example through its standard input, the way a person would: commands,
# a new library version installed while it runs, reload, disable/enable, quit.
#   test.sh COUNTER_BINARY PLUGIN_BUILD_DIR
set -euo pipefail
cli=$1 built=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/hotreload-counter.XXXXXX")
trap 'exec 3>&- 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/plugins"
cp "$built/counter_cli_v1.so" "$work/plugins/counter.so"
mkfifo "$work/input"
: > "$work/out" # exists before anyone waits on it
"$cli" --plugins "$work/plugins" --state "$work/state" < "$work/input" > "$work/out" 2>&1 &
pid=$!
exec 3> "$work/input"

fail() { echo "counter test failed: $*"; echo "--- output:"; cat "$work/out"; exit 1; }
# Waits (at most 30 s) for a line of output matching $1: waits on the program, never sleeps.
expect() {
  grep -m1 -q -- "$1" < <(timeout 30 tail -n +1 -f "$work/out" 2>/dev/null) || fail "no line matching '$1'"
}
# Waits (at most 30 s) until $2 lines of output match $1.
expect_n() {
  local n
  n=$(grep -m "$2" -- "$1" < <(timeout 30 tail -n +1 -f "$work/out" 2>/dev/null) | wc -l) || true
  [ "$n" -eq "$2" ] || fail "$n lines matching '$1', not $2"
}
send() { printf '%s\n' "$*" >&3; }

send counter increment
send counter increment
send counter show
expect "^count = 2 (counter 1.0.0)"
send counter reset
expect "counter 1.0.0: unknown command 'reset'"

# A new version lands in the plugin directory: written aside, renamed into place.
cp "$built/counter_cli_v2.so" "$work/plugins/.counter.so.new"
mv "$work/plugins/.counter.so.new" "$work/plugins/counter.so"
expect "Migrated state of plugin counter from state_version 1 to 2"
expect "counter 2.0.0 took over at count 2"
send counter increment
expect "^count = 3 (counter 2.0.0)"

send reload counter
expect "^reloaded counter 2.0.0 -> 2.0.0"
send plugins
expect "^counter *2.0.0 *yes *2"
send disable counter
send counter show
expect "^error: .*disabled"
send enable counter
send counter increment
expect "^count = 4 (counter 2.0.0)"
send reload nothing
expect "^error: .*nothing"

# An older build is refused by the host's acceptance check; 2.0.0 serves on, with its count.
cp "$built/counter_cli_old.so" "$work/plugins/.counter.so.new"
mv "$work/plugins/.counter.so.new" "$work/plugins/counter.so"
expect "refused by the host's acceptance check: 1.9.0 is older than 2.0.0 (downgrades are refused)"
send counter show
expect "^count = 4 (counter 2.0.0)"
# 2.0.0 again: accepted; the host's action after a reload prints it.
cp "$built/counter_cli_v2.so" "$work/plugins/.counter.so.new"
mv "$work/plugins/.counter.so.new" "$work/plugins/counter.so"
expect_n "^(counter 2.0.0 -> 2.0.0 in [0-9]* ms)" 2 # the manual reload's, and this one's
send quit
exec 3>&-
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || fail "exit status $status"
grep -q "Stopped plugin: counter" "$work/out" || fail "the plugin was not stopped at quit"

# A new process with the same state directory: the count survived the restart.
printf 'counter show\nquit\n' | "$cli" --plugins "$work/plugins" --state "$work/state" > "$work/out2" 2>&1 ||
  fail "the second run failed: $(cat "$work/out2")"
grep -q "^count = 4 (counter 2.0.0)" "$work/out2" || fail "the count did not survive a restart: $(cat "$work/out2")"
echo "counter example: ok"
cat "$work/out"
