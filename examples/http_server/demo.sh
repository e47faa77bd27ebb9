#!/usr/bin/env bash
# The hotreload demo: starts the HTTP server example on its plugins, sends it requests, then
# edits the greeter plugin's source (a copy), rebuilds it with the commands meson uses for
# it, installs the new library and shows the running server answering with the new text,
# its counter unchanged. Exits 0 when all of that happened, within a minute.
#
#   examples/http_server/demo.sh [BUILD_DIR]    (default: build, configured by meson)
set -euo pipefail

build=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/hotreload-demo.XXXXXX")
log="$work/server.log"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

bold="" plain=""
if [ -t 1 ]; then bold=$'\e[1m' plain=$'\e[0m'; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
fail() { printf 'demo failed: %s\n' "$*" >&2; show_log; exit 1; }

# The server's output (its own lines and the library's log) appears as it is written,
# step by step.
shown=0
show_log() {
  local total
  total=$(wc -l < "$log")
  if [ "$total" -gt "$shown" ]; then sed -n "$((shown + 1)),${total}p" "$log" | sed 's/^/    server| /'; fi
  shown=$total
}
# Waits (at most 30 s) until the server's output has a line matching $1: the library's own
# log lines are the events to wait on.
wait_for() {
  grep -m1 -q -- "$1" < <(timeout 30 tail -n +1 -f "$log" 2>/dev/null) || fail "no '$1' from the server within 30 s"
}
# request METHOD PATH: prints the exchange; the body is left in $body, the version in $version.
request() {
  local out
  out=$(curl -sS -X "$1" -D "$work/headers" "http://$address$2") || fail "$1 $2: no answer"
  body=$out
  version=$(sed -n 's/^X-Plugin-Version: \([^[:space:]]*\).*/\1/Ip' "$work/headers")
  printf '  %-30s -> %s%s\n' "$1 $2" "$(head -n1 "$work/headers" | tr -d '\r')" "${version:+ (X-Plugin-Version: $version)}"
  printf '  %s\n' "$body"
}

step "1. start the server on a copy of the plugins: $work/plugins"
mkdir -p "$work/plugins" "$work/src"
cp "$build/examples/http_server/greeter.so" "$build/examples/http_server/counter.so" "$work/plugins/"
: > "$log" # exists before anyone waits on it
"$build/examples/http_server/http_server" --plugins "$work/plugins" --port 0 --threads 2 > "$log" 2>&1 &
server=$!
wait_for "^listening on "
address=$(sed -n 's/^listening on //p' "$log")
show_log

step "2. requests"
request GET "/hello?name=world"
for _ in 1 2 3; do request POST /counter/increment; done
count_before=$(sed -n 's/.*"count":\([0-9]*\).*/\1/p' <<< "$body")

step "3. edit the greeter's source: \"Hello\" becomes \"Bonjour\", version 1.1.0"
cp "$here/plugins/greeter.cpp" "$work/src/greeter.cpp"
sed -i -e 's/greeting = "Hello"/greeting = "Bonjour"/' -e 's/"version": "1.0.0"/"version": "1.1.0"/' "$work/src/greeter.cpp"
diff -u "$here/plugins/greeter.cpp" "$work/src/greeter.cpp" --label greeter.cpp --label greeter.cpp | grep '^[-+][^-+]' || true

step "4. rebuild it with the compile and link commands meson uses for the greeter target"
# `ninja -t commands` prints them; only the source, object and library paths change.
commands=$(cd "$build" && ninja -t commands examples/http_server/greeter.so)
commands=$(sed -E -e "s#[^ ]*examples/http_server/plugins/greeter\.cpp#$work/src/greeter.cpp#" \
                  -e "s#examples/http_server/greeter\.so\.p/plugins_greeter\.cpp\.o#$work/src/greeter.o#g" \
                  -e "s#-o examples/http_server/greeter\.so #-o $work/src/greeter.so #" <<< "$commands")
while IFS= read -r command; do
  printf '  $ %s\n' "${command:0:110}..."
  (cd "$build" && eval "$command") || fail "the rebuild failed"
done <<< "$commands"

step "5. install the new library the way builds should: write it aside, rename it into place"
cp "$work/src/greeter.so" "$work/plugins/.greeter.so.new"
mv "$work/plugins/.greeter.so.new" "$work/plugins/greeter.so"
wait_for "reloaded plugin: greeter"
show_log

step "6. the same server, without a restart"
request GET "/hello?name=world"
grep -q "^Bonjour, world!" <<< "$body" || fail "the greeter did not change its answer"
[ "$version" = "1.1.0" ] || fail "the greeter's version is '$version', not 1.1.0"
request GET /counter
count_after=$(sed -n 's/.*"count":\([0-9]*\).*/\1/p' <<< "$body")
[ "$count_after" = "$count_before" ] || fail "the counter changed from $count_before to $count_after"
request POST /plugins/counter/reload
request GET /counter
count_after=$(sed -n 's/.*"count":\([0-9]*\).*/\1/p' <<< "$body")
[ "$count_after" = "$count_before" ] || fail "the counter's own reload changed it from $count_before to $count_after"
request GET /plugins

step "7. SIGINT: the server stops its plugins and exits"
kill -INT "$server"
status=0
wait "$server" || status=$?
server=""
show_log
[ "$status" -eq 0 ] || fail "the server exited with status $status"
printf '\n%sdemo passed:%s the greeter changed its answer in a running server; the counter kept %s.\n' \
  "$bold" "$plain" "$count_after"
