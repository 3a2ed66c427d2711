#!/usr/bin/env bash
# Runs the order-fanout example end to end: starts a private broker with the pipeline, produces
# ten orders, waits until the three stages have written their outputs, prints them and the
# pipeline's status, and stops the broker. Exits non-zero if an output is missing.
# SLUICE_BIN_DIR=/path/to/bin picks the sluice/sluiced binaries; KEEP=1 keeps the temp dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"
ORDERS=10

start_broker order-fanout --pipeline "$HERE/pipeline.lua"
say "sluiced (pid $PID) serving on $URL with pipeline order-fanout"

# ---- helpers -----------------------------------------------------------------------------------
# Instances publish their state and counters every 2 s; these read them back.
instances_with_partitions() {
    "$SLUICE" pipeline status order-fanout --json | grep -o '"partitions":\["' | wc -l
}

# Wait until each of the 5 instances (1 + 2 + 1 + 1) has joined its group and been given
# partitions, so that the two payments instances share the orders. Not needed for
# correctness: records produced earlier are simply all read by the first instance.
say "waiting for the instances to get their partitions"
wait_for 5 "instances with partitions" instances_with_partitions

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
wait_for $((4 * ORDERS)) "records_in in pipeline status" status_sum order-fanout records_in
say "sluice pipeline status order-fanout"
"$SLUICE" pipeline status order-fanout

stop_broker
echo "OK: every order reached shipments, charges and analytics"
