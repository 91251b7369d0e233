#!/bin/sh
# Installs this build into a staging directory, builds tests/external against
# it through pkg-config (as another project would), and runs the result.
# usage: check.sh SOURCE_ROOT BUILD_ROOT SANITIZE (meson's b_sanitize: none, thread, ...)
set -eu
src=$1 build=$2 sanitize=${3:-none}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet
pc=$(dirname "$(find "$stage" -name otp-cpp.pc | head -n 1)")
# The .pc file names the final prefix; the sysroot points it at the stage.
export PKG_CONFIG_PATH="$pc" PKG_CONFIG_SYSROOT_DIR="$stage"
opts=""
# An instrumented library needs an instrumented program.
[ "$sanitize" = none ] || opts="-Db_sanitize=$sanitize -Db_lundef=false"
CXX=${CXX:-c++} meson setup "$stage/consumer-build" "$src/tests/external" $opts >/dev/null
ninja -C "$stage/consumer-build" >/dev/null
out=$("$stage/consumer-build/consumer")
echo "$out"
[ "$out" = "hello 42" ]
