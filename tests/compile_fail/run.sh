#!/usr/bin/env bash
# Compiles one misuse case and passes if the compiler refuses it with the message the
# case's first line announces ("// expect: ..."), as C++20 unless a second line says
# otherwise ("// std: c++17").
# usage: run.sh INCLUDE_DIR CASE.cpp COMPILER [COMPILER ARGS...]
set -u
include="$1" case="$2"
shift 2
expect=$(head -n1 "$case" | sed 's|^// expect: ||')
std=$(sed -n '2s|^// std: ||p' "$case")
if out=$("$@" -std="${std:-c++20}" -fsyntax-only -DBOOST_DLL_USE_STD_FS -I "$include" "$case" 2>&1); then
  echo "FAIL: $case compiled, but it must not"
  exit 1
fi
if ! grep -qF -- "$expect" <<<"$out"; then
  echo "FAIL: $case was refused without the expected message: $expect"
  echo "$out" | head -30
  exit 1
fi
echo "ok: $case refused with: $expect"
