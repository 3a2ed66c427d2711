#!/usr/bin/env bash
# The cost of replication: the produce rate of one broker with acks=1 against three brokers
# on this machine with every partition replicated three times and acks=all (each record on
# all three before it is acknowledged). Issue 7's target: the second at least 40% of the
# first.
#
#   scripts/bench-replication.sh [--records N] [--size BYTES] [--runs K]
#
# Private brokers (from build/, or SL_BUILD_DIR) in temporary directories; per run a new
# 3-partition topic and `sluice bench produce` with the library's defaults, the topic deleted
# after it (three replicas write three times the bytes: kept, they would have the kernel
# write pages back to disk under later runs). Prints each run and the medians.
set -euo pipefail

BENCH_NAME=bench-replication
# shellcheck source=bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
RECORDS=2000000
SIZE=100
RUNS=3

while [ $# -gt 0 ]; do
    case $1 in
    --records) RECORDS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    -h | --help)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

CLUSTER_PIDS=()
cluster_cleanup() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -n "$WORK" ]; then
        for log in "$WORK"/node*.log; do
            [ -f "$log" ] && say "$(basename "$log"): $(grep -E 'WARN|ERROR' "$log" | tail -5)"
        done
    fi
    for pid in "${CLUSTER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    bench_cleanup
}
trap cluster_cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# rate TOPIC ACKS: records/s of one `sluice bench produce` run.
rate() {
    "$SLUICE" bench produce "$1" --records "$RECORDS" --size "$SIZE" --acks "$2" --json ${BENCH_ARGS:-} |
        /usr/bin/python3 -c 'import json, sys; print(int(json.load(sys.stdin)["records_per_sec"]))'
}

start_private_broker
single=()
for run in $(seq "$RUNS"); do
    "$SLUICE" topic create "single-$run" --partitions 3 >/dev/null
    r=$(rate "single-$run" 1)
    say "one broker, acks=1, run $run: $r records/s"
    single+=("$r")
    # Deleted, so its pages are not written back to disk under the next run.
    "$SLUICE" topic delete "single-$run" >/dev/null
done
kill -TERM "$broker_pid" && wait "$broker_pid" || true
broker_pid=""

ports=("$(free_port)" "$(free_port)" "$(free_port)")
controllers="1@127.0.0.1:${ports[0]},2@127.0.0.1:${ports[1]},3@127.0.0.1:${ports[2]}"
urls=()
for id in 1 2 3; do
    "$SLUICED" --node-id "$id" --controllers "$controllers" --data-dir "$WORK/node$id" \
        --listen tcp://127.0.0.1:0 --http-listen none --kafka-listen none \
        --ready-file "$WORK/ready$id.json" >"$WORK/node$id.log" 2>&1 &
    CLUSTER_PIDS+=($!)
done
for id in 1 2 3; do
    for _ in $(seq 100); do
        [ -s "$WORK/ready$id.json" ] && break
        sleep 0.1
    done
    urls+=("$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$WORK/ready$id.json")")
done
SLUICE_BROKER=$(IFS=,; echo "${urls[*]}")
export SLUICE_BROKER
for _ in $(seq 100); do
    "$SLUICE" cluster status 2>/dev/null | grep -q "3 of 3 brokers up" && break
    sleep 0.2
done
replicated=()
for run in $(seq "$RUNS"); do
    "$SLUICE" topic create "replicated-$run" --partitions 3 --replication 3 >/dev/null
    for _ in $(seq 100); do # every ISR whole
        "$SLUICE" topic describe "replicated-$run" --json | /usr/bin/python3 -c '
import json, sys
sys.exit(0 if all(len(p["isr"]) == 3 for p in json.load(sys.stdin)["partitions"]) else 1)' && break
        sleep 0.2
    done
    r=$(rate "replicated-$run" all)
    say "three brokers, replication 3, acks=all, run $run: $r records/s"
    replicated+=("$r")
    "$SLUICE" topic delete "replicated-$run" >/dev/null
done

one=$(printf '%s\n' "${single[@]}" | median)
three=$(printf '%s\n' "${replicated[@]}" | median)
say "median: one broker acks=1 $one records/s; three brokers replication 3 acks=all $three" \
    "records/s ($((100 * three / one))% of the first)"
