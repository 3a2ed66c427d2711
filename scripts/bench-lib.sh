# shellcheck shell=bash
# What the pipeline benchmarks share: a private sluiced in a temporary folder, stopped and
# removed on exit, and reading a consumer group's progress. Sourced, not run.
#
#   BENCH_NAME=bench-x; source scripts/bench-lib.sh
#   start_private_broker            # then $WORK, $SLUICE, $SLUICE_BROKER are set
#   read -r n state <<<"$(committed GROUP PARTITIONS)"   # n: sum of committed offsets,
#                                                        # state "done" when all have lag 0
#   median < numbers
#
# SL_BUILD_DIR picks the build directory (default build/).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${SL_BUILD_DIR:-build}
SLUICE=$ROOT/$BUILD_DIR/runtime/sluice
SLUICED=$ROOT/$BUILD_DIR/runtime/sluiced

say() { echo "$BENCH_NAME: $*" >&2; }
die() {
    say "$*"
    exit 1
}

WORK=""
broker_pid=""
bench_cleanup() {
    if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    [ -z "$WORK" ] || rm -rf "$WORK"
}
trap bench_cleanup EXIT

start_private_broker() {
    [ -x "$SLUICED" ] || die "no $SLUICED: build first (cmake -S . -B $BUILD_DIR && cmake --build $BUILD_DIR)"
    WORK=$(mktemp -d "/tmp/sluice-$BENCH_NAME.XXXXXX")
    "$SLUICED" --data-dir "$WORK/data" --listen tcp://127.0.0.1:0 --http-listen none \
        --kafka-listen none --ready-file "$WORK/ready.json" >"$WORK/sluiced.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 100); do
        [ -s "$WORK/ready.json" ] && break
        sleep 0.1
    done
    local url
    url=$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$WORK/ready.json")
    [ -n "$url" ] || die "sluiced did not start; log: $(tail -5 "$WORK/sluiced.log")"
    export SLUICE_BROKER=$url
}

# committed GROUP PARTITIONS: the group's committed offsets summed, and "done" once all
# PARTITIONS are committed to their ends.
committed() {
    "$SLUICE" group describe "$1" --json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
try:
    g = json.load(sys.stdin)
except ValueError:  # no such group yet
    print(0)
    sys.exit(0)
offs = g["offsets"]
done = len(offs) == int(sys.argv[1]) and all(o["lag"] == 0 for o in offs)
print(sum(max(o["committed_offset"], 0) for o in offs), "done" if done else "")' "$2"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
