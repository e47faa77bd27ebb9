#!/usr/bin/env bash
# Builds each consumer project against this source tree the way a user would (meson
# subproject, meson plugin-only project, pkg-config + Makefile and CMake find_package against
# staged installs, CMake FetchContent), then checks a real reload with each: the host loads
# build 1 of the plugin, counts, swaps in build 2 and reloads; build 2 must serve with the
# count. One line per project: "consumer NAME: ok" or "consumer NAME: FAILED".
#   tests/consumers/run.sh [NAME...]
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
here="$src/tests/consumers"
work=$(mktemp -d /tmp/hotreload-consumers.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$here/common" "$work/common"
export CXX=${CXX:-g++}
status=0

log() { echo "    $*" >&2; }

# reload NAME HOST BUILT_DIR: the reload check with the host and plugins one project built
# (and, where it built one, the plugin against a changed interface header, to be refused).
reload() {
  local plugins="$work/$1-plugins" changed=()
  [ -f "$3/tally_changed.so" ] && changed=("$3/tally_changed.so")
  mkdir -p "$plugins" && cp "$3/tally_v1.so" "$plugins/tally.so" && "$2" "$plugins" "$3/tally_v2.so" "${changed[@]}"
}

# project NAME: a copy of the project next to common/, as a user's tree would be.
project() {
  cp -r "$here/$1" "$work/$1"
  echo "$work/$1"
}

meson_subproject() {
  local p; p=$(project meson_subproject)
  ln -s "$src" "$p/subprojects/hotreload"
  meson setup "$p/build" "$p" >/dev/null && meson compile -C "$p/build" >/dev/null &&
    reload meson_subproject "$p/build/host" "$p/build"
}

meson_plugin_only() {
  local p; p=$(project meson_plugin_only)
  ln -s "$src" "$p/subprojects/hotreload"
  meson setup "$p/build" "$p" >/dev/null && meson compile -C "$p/build" >/dev/null &&
    reload meson_plugin_only "$work/meson_subproject/build/host" "$p/build"
}

pkgconfig_make() {
  local p; p=$(project pkgconfig_make)
  meson setup "$work/meson-install" "$src" --prefix="$work/stage" --libdir=lib -Dbuild_tests=false \
    -Dbuild_examples=false -Dbuild_benchmarks=false >/dev/null &&
    meson install -C "$work/meson-install" >/dev/null &&
    PKG_CONFIG_PATH="$work/stage/lib/pkgconfig" make -C "$p" >/dev/null &&
    reload pkgconfig_make "$p/host" "$p"
}

cmake_find_package() {
  local p; p=$(project cmake_find_package)
  cmake -G Ninja -S "$src" -B "$work/cmake-install" -DCMAKE_INSTALL_PREFIX="$work/cstage" >/dev/null &&
    cmake --install "$work/cmake-install" >/dev/null &&
    test -f "$work/cstage/share/doc/hotreload/LICENSE" &&
    cmake -G Ninja -S "$p" -B "$p/build" -DCMAKE_PREFIX_PATH="$work/cstage" >/dev/null &&
    cmake --build "$p/build" >/dev/null && reload cmake_find_package "$p/build/host" "$p/build"
}

cmake_fetchcontent() {
  local p; p=$(project cmake_fetchcontent)
  cmake -G Ninja -S "$p" -B "$p/build" -DHOTRELOAD_SOURCE="$src" >/dev/null &&
    cmake --build "$p/build" >/dev/null && reload cmake_fetchcontent "$p/build/host" "$p/build"
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(meson_subproject meson_plugin_only pkgconfig_make cmake_find_package cmake_fetchcontent)
for n in "${names[@]}"; do
  t0=$SECONDS
  if out=$("$n" 2>&1); then
    echo "$out" | grep -E "^(tally|changed interface)" | sed "s/^/    /"
    echo "consumer $n: ok ($((SECONDS - t0)) s)"
  else
    echo "$out" | tail -30
    echo "consumer $n: FAILED"
    status=1
  fi
done
exit $status
