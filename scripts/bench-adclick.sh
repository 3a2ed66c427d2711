#!/usr/bin/env bash
# Measures the ad-click aggregator (examples/adclick/aggregate.lua, Lua, one-minute tumbling
# windows): clicks/s while it drains a topic, from its group's first commit until it has
# committed the whole input, which is after the results of the closed windows and the state
# changelog are acknowledged. Broker included, on this machine.
#
#   scripts/bench-adclick.sh [--clicks N] [--instances I] [--runs K] [--exactly-once]
#
# --exactly-once deploys it with processing_guarantee = "exactly_once" (one transaction per
# commit; the whole input is then committed when the last transaction is).
#
# A private sluiced (from build/, or SL_BUILD_DIR) in a temporary directory; per run a new
# 6-partition topic of N clicks ({"ad_id":"a17","user_id":"u3","ts":...}, keyed by ad id, 100
# ads with a17 taking 30%, event times 1 ms apart with up to 3 s of disorder, spanning N ms),
# then the aggregator deployed on it. Prints each run and the median.
set -euo pipefail

BENCH_NAME=bench-adclick
# shellcheck source=bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
CLICKS=2000000
INSTANCES=2
RUNS=3
TIMEOUT_S=600
GUARANTEE=at_least_once

while [ $# -gt 0 ]; do
    case $1 in
    --clicks) CLICKS=$2; shift 2 ;;
    --instances) INSTANCES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --exactly-once) GUARANTEE=exactly_once; shift ;;
    -h | --help)
        sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

start_private_broker

say "generating $CLICKS clicks"
awk -v n="$CLICKS" 'BEGIN { srand(7); base = 1700000040000
    for (i = 0; i < n; i++) {
        ad = (rand() < 0.3) ? 17 : int(rand() * 100)
        printf "a%d\t{\"ad_id\":\"a%d\",\"user_id\":\"u%d\",\"ts\":%.0f}\n", ad, ad,
               int(rand() * 10000), base + i - int(rand() * 3000)
    } }' >"$WORK/clicks.txt"

run_one() { # RUN -> clicks/s on stdout
    local run=$1 name="adclick$1"
    "$SLUICE" topic create "clicks$run" --partitions 6 >/dev/null
    "$SLUICE" produce "clicks$run" --key-sep '\t' --linger-ms 20 <"$WORK/clicks.txt" >/dev/null
    cat >"$WORK/$name.lua" <<PIPE
return { name = "$name", processing_guarantee = "$GUARANTEE",
  topics = { { name = "per_minute$run", partitions = 6 }, { name = "clicks_late", partitions = 1 } },
  processors = { { name = "agg", input = "clicks$run", output = "per_minute$run",
                   instances = $INSTANCES, script = "$ROOT/examples/adclick/aggregate.lua" } } }
PIPE
    # The rate is taken from the first commit to the last, so that starting the instances
    # and joining the group (a second or two, paid once) does not count as processing.
    local first_t="" first_n=0 now n state
    "$SLUICE" pipeline deploy "$WORK/$name.lua" >/dev/null
    local deadline=$((SECONDS + TIMEOUT_S))
    while :; do
        now=$(date +%s.%N)
        read -r n state <<<"$(committed "sluice.$name.agg" 6)"
        if [ -z "$first_t" ] && [ "$n" -gt 0 ]; then
            first_t=$now
            first_n=$n
        fi
        [ "$state" = done ] && break
        [ $SECONDS -lt $deadline ] || die "$name did not finish in $TIMEOUT_S s"
        sleep 0.05
    done
    "$SLUICE" pipeline stop "$name" >/dev/null
    [ "$first_n" -lt "$CLICKS" ] || die "run $run: the first commit already covered every click; use more --clicks"
    awk -v n="$((CLICKS - first_n))" -v a="$first_t" -v b="$now" 'BEGIN { printf "%d\n", n / (b - a) }'
}

results=()
for r in $(seq "$RUNS"); do
    results+=("$(run_one "$r")")
    say "run $r: ${results[-1]} clicks/s"
done
printf 'adclick (Lua, %d instances)' "$INSTANCES"
for v in "${results[@]}"; do printf '  %10s' "$v"; done
printf '  median %s clicks/s\n' "$(printf '%s\n' "${results[@]}" | median)"
say "$CLICKS clicks per run, 6 partitions, 100 ads (a17 hot: 30%), acks=all outputs"
