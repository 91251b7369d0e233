#!/bin/sh
# Builds the libFuzzer harnesses and runs each for its share of a bounded
# time; exits non-zero if libFuzzer finds a crash, a leak or an escaping
# exception.
# usage: tests/fuzz/run.sh [SECONDS=60 in all] [BUILD_DIR=build-fuzz] [JOBS]
# The libraries are built by meson with ASan+UBSan and coverage for the fuzzer
# (-fsanitize=fuzzer-no-link); the harness links against them through the
# uninstalled pkg-config file that meson writes.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-60}
build=${2:-build-fuzz}
jobs=${3:-$(nproc)}
cxx=${CXX_CLANG:-clang++-19}
cd "$root"
# SECONDS is the whole run's budget, split evenly between the harnesses.
harnesses=4
per=$((seconds / harnesses))
[ "$per" -ge 1 ] || per=1

if [ ! -f "$build/build.ninja" ]; then
  CXX=$cxx meson setup "$build" --buildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args=-fsanitize=fuzzer-no-link \
    -Dtests=disabled -Dsamples=disabled -Dbench=disabled
fi
ninja -C "$build" -j "$jobs"

flags=$(PKG_CONFIG_PATH="$build/meson-uninstalled" pkg-config --cflags --libs otp-cpp-uninstalled)
# shellcheck disable=SC2086 # $flags is a list of options
$cxx -std=c++20 -g -O1 -D_GLIBCXX_ASSERTIONS \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  tests/fuzz/config_fuzz.cpp -o "$build/config_fuzz" $flags

# New inputs go to the build's corpus; the repository's seeds are only read.
mkdir -p "$build/corpus" "$build/artifacts"
"$build/config_fuzz" -max_total_time="$per" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
  -dict=tests/fuzz/json.dict -artifact_prefix="$build/artifacts/" "$build/corpus" tests/fuzz/corpus

# The kvstore's log replay: any bytes as a log file are loaded or reported
# as damage, never a crash (samples/kvstore/shard.cpp, built in here).
$cxx -std=c++20 -g -O1 -D_GLIBCXX_ASSERTIONS -Isamples/kvstore \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  tests/fuzz/replay_fuzz.cpp samples/kvstore/shard.cpp samples/kvstore/keyspace.cpp samples/kvstore/resp.cpp -o "$build/replay_fuzz" $flags
mkdir -p "$build/replay_corpus"
"$build/replay_fuzz" -max_total_time="$per" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$build/artifacts/replay-" "$build/replay_corpus" tests/fuzz/replay_corpus

# The kvstore's RESP parser (the same commands however the input is split
# into reads) and its KEYS glob (agrees with a port of Redis's
# stringmatchlen, in linear-ish time): samples/kvstore/resp.cpp alone.
for h in resp glob; do
  $cxx -std=c++20 -g -O1 -D_GLIBCXX_ASSERTIONS -Isamples/kvstore \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    "tests/fuzz/${h}_fuzz.cpp" samples/kvstore/resp.cpp -o "$build/${h}_fuzz"
  mkdir -p "$build/${h}_corpus"
  "$build/${h}_fuzz" -max_total_time="$per" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/${h}-" "$build/${h}_corpus" "tests/fuzz/${h}_corpus"
done
