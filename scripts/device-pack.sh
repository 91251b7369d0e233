#!/bin/sh
# Packs what scripts/device-run.sh needs on a bare many-core machine (the
# `device` tool's, which has Python 3 but no Debian packages) into .device/,
# which git ignores (.gitignore): release builds of otp_bench and
# kvstore, redis-server/-benchmark/-cli, a minimal Erlang/OTP (erts, kernel,
# stdlib, boot files) with the bench's modules compiled, and every shared
# library they load except glibc's own (the machine's is as new or newer).
# Then: run(command="scripts/device-run.sh", carry=[".device"], timeout_s=590).
# usage: scripts/device-pack.sh   (from anywhere; builds build-release first)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
d=.device

make -s bench-deps >/dev/null
[ -f build-release/build.ninja ] || CXX=${CXX_CLANG:-clang++-19} meson setup build-release --buildtype=release -Dtests=disabled
meson configure build-release -Dsamples=enabled >/dev/null
ninja -C build-release bench/otp_bench samples/kvstore/kvstore

rm -rf "$d"
mkdir -p "$d/bin" "$d/lib" "$d/build-bench/erlang"
cp build-release/bench/otp_bench build-release/samples/kvstore/kvstore "$d/bin/"
cp "$(command -v redis-server)" "$(command -v redis-benchmark)" "$(command -v redis-cli)" "$d/bin/"
strip "$d"/bin/*

# Erlang: the runtime's files, and an `erl` that finds them where they are.
erts=$(basename /usr/lib/erlang/erts-*)
mkdir -p "$d/erlang/lib" "$d/erlang/releases"
cp -r "/usr/lib/erlang/$erts" "$d/erlang/"
rm -f "$d/erlang/$erts/bin/"*.src
cp -r /usr/lib/erlang/lib/kernel-* /usr/lib/erlang/lib/stdlib-* "$d/erlang/lib/"
rm -rf "$d"/erlang/lib/*/src "$d"/erlang/lib/*/include "$d"/erlang/lib/*/doc
cp -r /usr/lib/erlang/releases/* "$d/erlang/releases/"
cat >"$d/bin/erl" <<EOF
#!/bin/sh
# erl for the runtime packed beside this script (scripts/device-pack.sh).
here=\$(cd "\$(dirname "\$0")/.." && pwd)
export ROOTDIR="\$here/erlang" EMU=beam PROGNAME=erl
export BINDIR="\$ROOTDIR/$erts/bin"
exec "\$BINDIR/erlexec" -boot "\$ROOTDIR/releases/25/start_clean" "\$@"
EOF
chmod +x "$d/bin/erl"
erlc -o "$d/build-bench/erlang" bench/erlang/*.erl

# Shared libraries, glibc's excepted.
for f in "$d"/bin/otp_bench "$d"/bin/kvstore "$d"/bin/redis-* "$d/erlang/$erts/bin/beam.smp" \
  "$d/erlang/$erts/bin/erl_child_setup" "$d/erlang/$erts/bin/erlexec"; do
  ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux*) ;;
    *) cp -L "$lib" "$d/lib/" ;;
  esac
done
du -sh "$d"
