#!/usr/bin/env bash
# Runs the notifications example end to end: starts a private broker with the pipeline,
# produces good, flaky and bad notifications, waits until the good and flaky ones are in
# `sent` and the bad ones in notifications.dlq, prints the dead letters and the pipeline's
# status, replays the DLQ and shows the bad records fail again, and stops the broker.
# SLUICE_BIN_DIR=/path/to/bin picks the sluice/sluiced binaries; KEEP=1 keeps the temp dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"

start_broker notifications --pipeline "$HERE/pipeline.lua"
say "sluiced (pid $PID) serving on $URL with pipeline notifications"

# ---- helpers -----------------------------------------------------------------------------------
# Joins the lines of a multi-line header value (sluice.traceback's start with a tab) to the
# record's line, and leaves the traceback out: one line per record.
one_line() {
    awk '/^\t/ { sub(/^\t/, ""); rec = rec " / " $0; next }
         { if (NR > 1) print rec; rec = $0 } END { if (NR) print rec }' |
        sed 's/,sluice\.traceback=.*,sluice\.stage=/,sluice.stage=/'
}

# ---- produce: 4 good, 3 flaky (succeed on the 2nd retry), 2 bad (always fail) ------------------
{
    for i in 1 2 3 4; do printf 'good-%d\t{"to":"user%d@example.com","text":"welcome"}\n' $i $i; done
    for i in 1 2 3; do printf 'flaky-%d\t{"to":"flaky%d@example.com","text":"your receipt","flaky":true}\n' $i $i; done
    for i in 1 2; do printf 'bad-%d\t{"to":"nobody%d@invalid","text":"hello","bad":true}\n' $i $i; done
} >"$WORK/notifications.txt"
GOOD=7 BAD=2
say "producing 9 notifications (4 good, 3 flaky, 2 bad)"
tr '\t' ' ' <"$WORK/notifications.txt"
"$SLUICE" produce notifications --key-sep '\t' -v <"$WORK/notifications.txt"

# Flaky ones need 1s (retry.1) + 2s (retry.2); bad ones reach the DLQ after the same 3s.
say "waiting for the retries"
wait_for "$GOOD" "distinct keys in sent" distinct_keys sent
wait_for "$BAD" "records in notifications.dlq" count notifications.dlq

say "sent (sent_on_attempt: 0 = first try, 2 = second retry)"
"$SLUICE" consume sent -F '%k %v\n'
n=$("$SLUICE" consume sent -F '%k\n' | grep -c '^bad-' || true)
[ "$n" -eq 0 ] || die "a bad notification was sent"

say "notifications.retry.1 and .retry.2 (keys and routing headers, traceback left out)"
for t in notifications.retry.1 notifications.retry.2; do
    "$SLUICE" consume "$t" -F '%t %k %h\n' | one_line
done

say "notifications.dlq: the dead letters with all their headers (-F '%k %v %h\n')"
"$SLUICE" consume notifications.dlq -F '%k %v %h\n'

wait_for "$BAD" "dead_lettered in pipeline status" status_sum notifications dead_lettered
wait_for "$GOOD" "records_out in pipeline status" status_sum notifications records_out
say "sluice pipeline status notifications"
"$SLUICE" pipeline status notifications

# ---- replay: the DLQ's records go back to notifications-<original partition> ------------------
say "sluice dlq replay notifications.dlq"
"$SLUICE" dlq replay notifications.dlq
say "notifications now: the bad ones again at the end of their partitions, without sluice.* headers"
"$SLUICE" consume notifications -F '%p@%o %k %v %h\n'
n=$(count notifications)
[ "$n" -eq $((9 + BAD)) ] || die "notifications has $n records, expected $((9 + BAD))"

# Nothing was fixed, so they fail again: through both retries, back into the DLQ.
say "waiting for the replayed records to fail again"
wait_for $((2 * BAD)) "records in notifications.dlq" count notifications.dlq
say "notifications.dlq (partition@offset, key, and the notifications offset each copy failed at)"
"$SLUICE" consume notifications.dlq -F '%p@%o %k %h\n' | one_line |
    sed 's/ sluice\..*sluice\.original_offset=\([0-9]*\).*/  sluice.original_offset=\1/'
[ "$(distinct_keys sent)" -eq "$GOOD" ] || die "sent changed after the replay"

stop_broker
echo "OK: $GOOD notifications sent, $BAD dead-lettered, replayed and dead-lettered again"
