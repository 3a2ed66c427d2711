#!/usr/bin/env bash
# Runs the ad-click aggregator end to end: starts a private broker with pipeline.lua, produces a
# small scripted stream of clicks (out of order within the grace period, one late click, a hot
# ad), waits for the closed windows' counts and checks them, then restarts the broker and shows
# the state coming back from the changelog. Exits non-zero if a count is wrong or missing.
# SLUICE_BIN_DIR=/path/to/bin picks the sluice/sluiced binaries; KEEP=1 keeps the temp dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"
# A whole minute ten minutes ago: windows are [BASE, BASE+60s), [BASE+60s, BASE+120s), ... (recent,
# so that retention, which goes by record time, keeps the results stamped with their ends).
BASE=$(( ($(date +%s) / 60 - 10) * 60000 ))

start_broker adclick --pipeline "$HERE/pipeline.lua"
say "sluiced (pid $PID) serving on $URL with pipeline adclick"

instances_with_partitions() {
    "$SLUICE" pipeline status adclick --json 2>/dev/null | grep -o '"partitions":\["' | wc -l
}
say "waiting for the 2 instances to share the 6 partitions of clicks"
wait_for 2 "instances with partitions" instances_with_partitions

# click AD SECONDS: a click line at BASE + SECONDS (decimals allowed).
click() {
    awk -v ad="$1" -v s="$2" -v base="$BASE" 'BEGIN {
        printf "%s\t{\"ad_id\":\"%s\",\"user_id\":\"u%d\",\"ts\":%.0f}\n", ad, ad, int(s) % 7, base + s * 1000 }'
}

say "producing clicks: minute 0 and 1 for a17 (hot), a3 and a5"
{
    for s in 0 10 20 50 59.9; do click a17 "$s"; done
    for s in 15 40; do click a3 "$s"; done
    for s in 62 61; do click a17 "$s"; done # 61 after 62: out of order, same minute
    # Minute 0 after minute 1 began: a17's partition has seen 62 s, and minute 0 closes there
    # only at 60 + 5 (grace) = 65 s, so this click is on time and counts.
    click a17 58
    click a5 70
} >"$WORK/clicks1.txt"
"$SLUICE" produce clicks --key-sep '\t' <"$WORK/clicks1.txt"

say "a3 moves on to 95 s (closing its minute 0), then a click from 30 s arrives: late"
{
    click a3 95
    click a3 30
} | "$SLUICE" produce clicks --key-sep '\t'

# Stream time is per partition: a click at 200 s in every partition closes minutes 0 and 1
# everywhere (they close at 65 s and 125 s).
say "a click at 200 s in each partition closes minutes 0 and 1"
for p in 0 1 2 3 4 5; do
    click a99 200 | "$SLUICE" produce clicks --key-sep '\t' -p "$p"
done

wait_for 5 "results in ad_clicks_per_minute" count ad_clicks_per_minute
wait_for 1 "records in clicks_late" count clicks_late

say "ad_clicks_per_minute"
"$SLUICE" consume ad_clicks_per_minute -F '%k %v\n' | tee "$WORK/results.txt"
say "clicks_late"
"$SLUICE" consume clicks_late -F '%k %v\n'

expect() { # AD WINDOW_START_S COUNT
    local start=$((BASE + $2 * 1000)) n
    n=$(grep -c "^$1 .*\"window_start\":$start,.*\"count\":$3}" "$WORK/results.txt" || true)
    [ "$n" -ge 1 ] || die "no result $1 minute starting at +$2 s with count $3"
}
expect a17 0 6
expect a3 0 2
expect a17 60 2
expect a5 60 1
expect a3 60 1
n=$(sort -u "$WORK/results.txt" | wc -l)
[ "$n" -eq 5 ] || die "$n distinct results, expected 5"

wait_for 16 "records_in in pipeline status" status_sum adclick records_in
wait_for 1 "late clicks counted (metric late)" status_sum adclick late
say "sluice pipeline status adclick (the metrics are the windows library's counters)"
"$SLUICE" pipeline status adclick | tee "$WORK/status.txt"
grep -q "changelog adclick.per_minute.changelog" "$WORK/status.txt" ||
    die "the status shows no state or changelog"

# ---- restart: the open windows (minute 3 of a99) come back from the changelog ------------------
say "restarting the broker: each instance restores its partitions' state"
stop_broker
start_broker_again() {
    (cd "$WORK" && exec "$SLUICED" --data-dir data --listen "$URL" --http-listen none \
        --kafka-listen none) >>"$WORK/sluiced.log" 2>&1 &
    PID=$!
}
start_broker_again
wait_for 2 "instances with partitions" instances_with_partitions
for p in 0 1 2 3 4 5; do
    click a99 300 | "$SLUICE" produce clicks --key-sep '\t' -p "$p"
done
# Minute 3 held a99's click at 200 s in each partition (windows are per partition: six results
# of one click each) if the state came back.
wait_for 11 "results in ad_clicks_per_minute" count ad_clicks_per_minute
"$SLUICE" consume ad_clicks_per_minute -F '%k %v\n' | grep '^a99 ' | tee "$WORK/a99.txt"
total=$(grep -o '"count":[0-9]*' "$WORK/a99.txt" | cut -d: -f2 | awk '{ s += $1 } END { print s }')
[ "$total" -eq 6 ] || die "a99's minute 3 counted $total clicks over the partitions, expected 6"
grep 'restored partition' "$WORK/sluiced.log" | sed 's/^/  /' | head -6

stop_broker
echo "OK: 5 windows counted right, 1 late click set aside, state restored across a restart"
