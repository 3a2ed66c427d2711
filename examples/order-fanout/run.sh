#!/usr/bin/env bash
# Runs the order-fanout example end to end: starts a private broker with the pipeline, produces
# ten orders, waits until the three stages have written their outputs, prints them and the
# pipeline's status, and stops the broker. Exits non-zero if an output is missing.
# SLUICE_BIN_DIR=/path/to/bin picks the sluice/sluiced binaries; KEEP=1 keeps the temp dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ORDERS=10
DEADLINE_S=${DEADLINE_S:-30} # seconds, for each wait

say() { printf '\n== %s\n' "$*"; }
die() { echo "run.sh: $*" >&2; exit 1; }

# ---- the binaries: $SLUICE_BIN_DIR, else the build tree, else PATH ----------------------------
if [ -n "${SLUICE_BIN_DIR:-}" ]; then
    BIN=$SLUICE_BIN_DIR
elif [ -x "$HERE/../../build/runtime/sluiced" ]; then
    BIN=$HERE/../../build/runtime
else
    BIN=$(dirname "$(command -v sluiced || echo /nonexistent/sluiced)")
fi
SLUICED=$BIN/sluiced
SLUICE=$BIN/sluice
if [ ! -x "$SLUICED" ] || [ ! -x "$SLUICE" ]; then
    die "no sluiced/sluice in $BIN (set SLUICE_BIN_DIR)"
fi

# ---- a private broker in a temp dir; the trap stops it and removes the dir ---------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-order-fanout.XXXXXX")
PID=""
cleanup() {
    local rc=$?
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$PID" 2>/dev/null || true # still there after 20 s
        wait "$PID" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ] && [ -f "$WORK/sluiced.log" ]; then
        echo "--- last lines of the broker's log ---" >&2
        tail -n 30 "$WORK/sluiced.log" >&2
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Port 0 picks a free port; the ready file (written once the pipeline is deployed) says which.
"$SLUICED" --data-dir "$WORK/data" --listen tcp://127.0.0.1:0 --http-listen none \
    --kafka-listen none --ready-file "$WORK/ready.json" --pipeline "$HERE/pipeline.lua" \
    >"$WORK/sluiced.log" 2>&1 &
PID=$!
end=$((SECONDS + DEADLINE_S))
until [ -s "$WORK/ready.json" ]; do
    kill -0 "$PID" 2>/dev/null || { PID=""; die "sluiced exited during start-up"; }
    [ "$SECONDS" -lt "$end" ] || die "sluiced not ready after ${DEADLINE_S}s"
    sleep 0.1
done
URL=$(sed 's/.*"listen":"\([^"]*\)".*/\1/' "$WORK/ready.json")
export SLUICE_BROKER=$URL # the default -b of every sluice command below
say "sluiced (pid $PID) serving on $URL with pipeline order-fanout"

# ---- helpers -----------------------------------------------------------------------------------
count() { "$SLUICE" consume "$1" -F 'x\n' | wc -l; }
distinct_keys() { "$SLUICE" consume "$1" -F '%k\n' | sort -u | wc -l; }
# Instances publish their state and counters every 2 s; these read them back.
instances_with_partitions() {
    "$SLUICE" pipeline status order-fanout --json | grep -o '"partitions":\["' | wc -l
}
status_sum() { # the sum of a counter over all instances
    "$SLUICE" pipeline status order-fanout --json | grep -o "\"$1\":[0-9]*" |
        awk -F: '{ s += $2 } END { print s + 0 }'
}
wait_for() { # WANT DESCRIPTION COMMAND...: polls until COMMAND prints a number >= WANT
    local want=$1 what=$2 end=$((SECONDS + DEADLINE_S)) n
    shift 2
    while :; do
        n=$("$@") || n=-1 # a failed command counts as not there yet
        [ "$n" -lt "$want" ] || break
        [ "$SECONDS" -lt "$end" ] || die "$what: $n after ${DEADLINE_S}s, expected $want"
        sleep 0.2
    done
    echo "  $what: $n"
}

# Wait until each of the 4 instances (1 + 2 + 1) has joined its group and been given
# partitions, so that the two payments instances share the orders. Not needed for
# correctness: records produced earlier are simply all read by the first instance.
say "waiting for the instances to get their partitions"
wait_for 4 "instances with partitions" instances_with_partitions

# ---- produce: one JSON order per line, "key<TAB>value" -----------------------------------------
countries=(DE FR NL DE IT FR DE ES NL DE)
for i in $(seq 1 "$ORDERS"); do
    c=${countries[$(((i - 1) % ${#countries[@]}))]}
    printf 'order-%03d\t{"id":"order-%03d","customer":"c%d","country":"%s","address":"%d Main St, %s","amount":%d.%02d,"items":[%s]}\n' \
        "$i" "$i" "$((i % 4))" "$c" "$i" "$c" "$((i * 7))" "$((i * 13 % 100))" \
        "$(seq -s, 1 $((i % 3 + 1)))"
done >"$WORK/orders.txt"
say "producing $ORDERS orders to 'orders'"
head -n 3 "$WORK/orders.txt" | tr '\t' ' '
echo "..."
"$SLUICE" produce orders --key-sep '\t' -v <"$WORK/orders.txt"

# ---- wait until each output topic has a record per order (at least once: maybe more) ----------
say "waiting for the three stages"
for topic in shipments charges analytics; do
    wait_for "$ORDERS" "records in $topic" count "$topic"
done

# Every stage keys its output so that it can be checked: logistics and payments by order id.
for topic in shipments charges; do
    n=$(distinct_keys "$topic")
    [ "$n" -eq "$ORDERS" ] || die "'$topic' has $n distinct order ids, expected $ORDERS"
done

FMT='p%p@%o  %k  %v  %h\n'
say "shipments (logistics: order id and address)"
"$SLUICE" consume shipments -F "$FMT"
say "charges (payments: amount in cents; header charged-by = the instance)"
"$SLUICE" consume charges -F "$FMT"
say "analytics (running count of orders per country, keyed by country)"
"$SLUICE" consume analytics -F "$FMT"

# Wait until the published counters cover every order, so that the status shows IN = OUT = 10
# for each stage.
wait_for $((3 * ORDERS)) "records_in in pipeline status" status_sum records_in
say "sluice pipeline status order-fanout"
"$SLUICE" pipeline status order-fanout

# ---- stop the broker: SIGTERM makes the instances commit and leave, then the broker exits 0 ----
say "stopping sluiced"
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=""
[ "$rc" -eq 0 ] || die "sluiced exited with status $rc"
echo "OK: every order reached shipments, charges and analytics"
