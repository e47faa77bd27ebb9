#!/usr/bin/env bash
# The hotreload demo, the edit-save-serve loop: starts the HTTP server example with a build
# command for the greeter plugin (--rebuild) and the greeter's source directory (--sources),
# sends it requests, then edits the greeter's source three times, as a developer would:
#   1. a new greeting: the server builds it, reloads it, and answers with it;
#   2. a compile error: the server logs the compiler's error, the old greeter answers on;
#   3. the fix: built, reloaded, answering; the counter plugin kept its count throughout.
# The build is the one meson runs for the greeter target, replayed by a private ninja file
# on a copy of the source (the checkout is never touched). Exits 0 when all of that
# happened, within a minute.
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
# Waits (at most 30 s) until the server's output has a line matching $1 after the lines
# already shown: the library's own log lines are the events to wait on.
wait_for() {
  grep -m1 -q -- "$1" < <(timeout 30 tail -n +"$((shown + 1))" -f "$log" 2>/dev/null) ||
    fail "no '$1' from the server within 30 s"
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
# greets TEXT VERSION: GET /hello is answered "TEXT, world!" by that version of the greeter.
greets() {
  request GET "/hello?name=world"
  grep -q "^$1, world!" <<< "$body" || fail "the greeter answered '$body', not '$1, world!'"
  [ "$version" = "$2" ] || fail "the greeter's version is '$version', not $2"
}
# edit SED_SCRIPT: edits the greeter's source in place and shows the change.
edit() {
  cp "$work/src/greeter.cpp" "$work/previous.cpp"
  sed -i "$1" "$work/src/greeter.cpp"
  diff -u "$work/previous.cpp" "$work/src/greeter.cpp" --label greeter.cpp --label greeter.cpp | grep '^[-+][^-+]' || true
}

step "1. a build for the greeter: meson's compile and link commands, on a copy of its source"
mkdir -p "$work/plugins" "$work/src" "$work/obj"
cp "$here/plugins/greeter.cpp" "$work/src/greeter.cpp"
cp "$build/examples/http_server/greeter.so" "$build/examples/http_server/counter.so" "$work/plugins/"
# `ninja -t commands` prints them (run in the build directory); only the source, object and
# library paths change. The compiler's depfile lets ninja follow the headers too.
commands=$(cd "$build" && ninja -t commands examples/http_server/greeter.so)
commands=$(sed -E -e "s#[^ ]*examples/http_server/plugins/greeter\.cpp#$work/src/greeter.cpp#" \
                  -e "s#examples/http_server/greeter\.so\.p/plugins_greeter\.cpp\.o#$work/obj/greeter.o#g" \
                  -e "s#-o examples/http_server/greeter\.so #-o $work/plugins/greeter.so #" <<< "$commands")
compile=$(sed -n 1p <<< "$commands")
link=$(sed -n 2p <<< "$commands")
cat > "$work/build.ninja" <<NINJA
rule compile
  command = cd $build && $compile
  depfile = $work/obj/greeter.o.d
  deps = gcc
  description = compiling greeter.cpp
rule link
  command = cd $build && $link
  description = linking greeter.so
build $work/obj/greeter.o: compile $work/src/greeter.cpp
build $work/plugins/greeter.so: link $work/obj/greeter.o
NINJA
printf '  build command: ninja -C %s   (watching %s)\n' "$work" "$work/src"

step "2. start the server: --plugins $work/plugins --rebuild \"ninja -C $work\" --sources $work/src"
: > "$log" # exists before anyone waits on it
"$build/examples/http_server/http_server" --plugins "$work/plugins" --port 0 --threads 2 \
  --rebuild "ninja -C $work" --sources "$work/src" > "$log" 2>&1 &
server=$!
wait_for "^listening on "
address=$(sed -n 's/^listening on //p' "$log")
show_log
greets Hello 1.0.0
for _ in 1 2 3; do request POST /counter/increment; done
count_before=$(sed -n 's/.*"count":\([0-9]*\).*/\1/p' <<< "$body")

step "3. edit and save: \"Hello\" becomes \"Bonjour\", version 1.1.0 (the server builds and reloads by itself)"
edit 's/greeting = "Hello"/greeting = "Bonjour"/; s/"version": "1.0.0"/"version": "1.1.0"/'
wait_for "reloaded plugin: greeter"
show_log
greets Bonjour 1.1.0

step "4. edit and save with a compile error: the server shows it, the old greeter answers on"
edit 's/greeting = "Bonjour"/greeting = Hallo/; s/"version": "1.1.0"/"version": "1.2.0"/'
wait_for "Build failed"
wait_for "error:"
show_log
greets Bonjour 1.1.0

step "5. fix it and save: built, reloaded, answering"
edit 's/greeting = Hallo/greeting = "Hallo"/'
wait_for "reloaded plugin: greeter"
show_log
greets Hallo 1.2.0

step "6. the counter, untouched by all of it, and reloaded on request: its count is kept"
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
printf '\n%sdemo passed:%s three edits of a running server: built and served, refused with the compiler'"'"'s error, fixed and served; the counter kept %s.\n' \
  "$bold" "$plain" "$count_after"
