#!/bin/sh
# Runs the randomized load-balancing cases (tests/otp/balance_test.cpp) many
# times, each time from another seed: processes that move while messages,
# links, monitors, calls, exit signals, kills and timers reach them,
# callers that follow their callees, and busy servers sent away at their
# fair-share yield.
#
#   scripts/stress.sh BUILD_DIR [ROUNDS] [NODES_PER_ROUND]
#
# e.g. after `make test-tsan`: scripts/stress.sh build-tsan 50 20
# (50 rounds x 20 nodes x 4 cases = 4,000 randomized node runs).
set -eu
build=${1:?usage: scripts/stress.sh BUILD_DIR [ROUNDS] [NODES_PER_ROUND]}
rounds=${2:-20}
nodes=${3:-20}
bin="$build/tests/otp_balance"
[ -x "$bin" ] || { echo "stress.sh: $bin not found: build the tests first" >&2; exit 2; }
i=0
while [ "$i" -lt "$rounds" ]; do
  OTP_STRESS_RUNS=$nodes OTP_STRESS_SEED=$((i * 100000)) "$bin" \
    -tc="a process that moves keeps*,exit signals and kills*,callers follow their callees*,servers sent away*" >"/tmp/stress-$$.log" 2>&1 || {
    cat "/tmp/stress-$$.log"; echo "stress.sh: round $i (seed $((i * 100000))) failed" >&2; exit 1; }
  i=$((i + 1))
done
rm -f "/tmp/stress-$$.log"
echo "stress.sh: $rounds rounds x $nodes nodes x 4 cases passed ($bin)"
