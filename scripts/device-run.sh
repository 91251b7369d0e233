#!/bin/sh
# The many-core measurements of issues 10 and 11 in one run, on the
# `device` machine (16 cores), from what scripts/device-pack.sh packed:
#  1. scaling of natural code, otp-cpp and Erlang/OTP, 1 to 16 schedulers;
#  2. ping_pong_cross_ns and the single-scheduler rows;
#  3. kvstore on 8 schedulers against redis-server (one thread, and 8 I/O
#     threads) on cores 0-7, redis-benchmark with 8 threads on cores 8-15.
# Results go to $OUT (or results-device/ without it). Steps are bounded so
# that the whole run ends within about 10 minutes.
# usage: scripts/device-run.sh [quick]   (quick: a smoke run of each step)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
d="$root/.device"
out=${OUT:-$root/results-device}
mkdir -p "$out"
export PATH="$d/bin:$PATH" LD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONUNBUFFERED=1
cores=$(nproc)
if [ "${1:-}" = quick ]; then
  counts=1,2 runs=1 requests=20000 half=1
else
  counts=1,2,4,8,16 runs=2 requests=500000 half=$((cores / 2))
fi
{
  echo "cores: $cores"
  uname -a
  python3 --version
} >"$out/machine.txt" 2>&1

timeout 360 python3 bench/scaling.py --otp-bin "$d/bin/otp_bench" --build-dir "$d/build-bench" --impl otp,erlang \
  --schedulers "$counts" --runs "$runs" --out "$out/scaling.json" 2>&1 | tee "$out/scaling.txt"

for name in cache_line_round_trip_ns ping_pong_cross_ns ping_pong_ns ring_hop_ns spawn_exit_ns gen_server_call_ns skynet_ms; do
  for _ in 1 2 3; do timeout 60 "$d/bin/otp_bench" "$name" 2>&1 | grep RESULT; done
done | tee "$out/single.txt"

last=$((cores - 1))
timeout 240 python3 bench/redis_bench.py --kvstore "$d/bin/kvstore" --schedulers "$half" \
  --redis-io-threads "$half" --server-cores "0-$((half - 1))" --client-cores "$half-$last" \
  --client-threads "$half" --clients 400 --requests "$requests" --requests-pipelined "$((requests * 4))" --runs "$runs" \
  --out "$out/kvstore.json" 2>&1 | tee "$out/kvstore.txt"
ls -l "$out"
