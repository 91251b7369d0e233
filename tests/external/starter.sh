#!/bin/sh
# Builds examples/starter against the installed library as a user would:
# with meson and with CMake, with clang 19 and with g++ 12 (whichever of the
# two built the library), and runs each build: its self test talks to the
# service over a loopback socket (a GenServer behind a supervisor from JSON)
# and stops it.
# usage: starter.sh SOURCE_ROOT BUILD_ROOT SANITIZE LIBRARY_COMPILER_ID
# (meson's b_sanitize and compiler id). Against a clang-built library, all
# four builds; against a g++-built one (make test-gcc), two: meson with
# clang and CMake with g++, so that CI does not build the same four twice.
set -eu
src=$1 build=$2 sanitize=${3:-none} libcxx=${4:-clang}
if [ "$sanitize" != none ]; then
  echo "starter.sh: skipped in a $sanitize build (the consumer would need the same instrumentation)"
  exit 77 # meson: skipped
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet
pc=$(find "$stage" -name otp-cpp.pc | head -n 1)
# The .pc file names the final prefix: point it at the stage. (Not through
# PKG_CONFIG_SYSROOT_DIR, which would move spdlog's /usr/include too, and
# CMake refuses an imported target whose include directory does not exist.)
prefix=$(sed -n 's/^prefix=//p' "$pc")
sed -i "s|^prefix=.*|prefix=$stage$prefix|" "$pc"
export PKG_CONFIG_PATH="$(dirname "$pc")"
# The starter's own tree, with its self test on and an ephemeral port.
sed -e 's/"self_test": false/"self_test": true/' -e 's/"port": [0-9]*/"port": 0/' \
  "$src/examples/starter/app.json" >"$stage/app.json"
grep -q '"self_test": true' "$stage/app.json"
failed=0
for cxx in clang++-19 g++; do
  if ! command -v "$cxx" >/dev/null; then
    echo "FAIL: $cxx is not installed (make deps)"
    failed=1
    continue
  fi
  for tool in meson cmake; do
    if [ "$libcxx" = gcc ] && { [ "$tool/$cxx" = meson/g++ ] || [ "$tool/$cxx" = cmake/clang++-19 ]; }; then
      continue
    fi
    dir="$stage/$tool-$cxx"
    log="$stage/$tool-$cxx.log"
    if [ "$tool" = meson ]; then
      built() { CXX=$cxx meson setup "$dir" "$src/examples/starter" && ninja -C "$dir"; }
    else
      built() { CXX=$cxx cmake -S "$src/examples/starter" -B "$dir" -G Ninja && cmake --build "$dir"; }
    fi
    if ! built >"$log" 2>&1; then
      echo "FAIL: examples/starter does not build with $tool and $cxx:"
      tail -n 40 "$log"
      failed=1
      continue
    fi
    if out=$(timeout 120 "$dir/starter" "$stage/app.json" 2>&1) && echo "$out" | grep -q "starter: the counter says 3"; then
      echo "ok: examples/starter with $tool and $cxx"
    else
      echo "FAIL: examples/starter built with $tool and $cxx did not pass its self test:"
      echo "$out" | tail -n 20
      failed=1
    fi
  done
done
exit $failed
