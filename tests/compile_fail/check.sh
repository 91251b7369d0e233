#!/bin/sh
# Compiles one file that must NOT compile, and checks the diagnostic says why.
# usage: check.sh SOURCE_ROOT FILE EXPECTED -- COMPILER [ARGS...]
set -u
root=$1 file=$2 expected=$3
shift 4
out=$("$@" -std=c++20 -fsyntax-only -DASIO_HAS_CO_AWAIT=1 -DASIO_HAS_STD_COROUTINE=1 -DASIO_DISABLE_STD_ALIGNED_ALLOC -I"$root" "$file" 2>&1)
if [ $? -eq 0 ]; then
  echo "FAIL: $file compiled, but it must be rejected"
  exit 1
fi
if printf '%s' "$out" | grep -qF -- "$expected"; then
  echo "ok: $file rejected with: $expected"
  exit 0
fi
echo "FAIL: $file was rejected without the expected diagnostic: $expected"
printf '%s\n' "$out" | head -40
exit 1
