#!/usr/bin/env bash
# Stops the broker that scripts/start.sh started: SIGTERM (sluiced flushes and exits), then
# SIGKILL if it is still there after 10 s. Finds it through data/sluiced.pid, else through the
# "pid" in data/ready.json. Does nothing, successfully, when no such broker is running.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PID_FILE=data/sluiced.pid
READY_FILE=data/ready.json
TERM_WAIT_S=10

# Alive, and a sluiced: a pid left in a stale file may since belong to something else.
is_our_broker() {
    local pid=$1 state
    [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sluiced ] || return 1
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ]
}

broker_pid() {
    local pid=""
    if [ -s "$PID_FILE" ]; then
        pid=$(tr -dc '0-9' <"$PID_FILE")
    fi
    if [ -z "$pid" ] && [ -s "$READY_FILE" ]; then
        pid=$(sed -n 's/.*"pid":[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$READY_FILE")
    fi
    echo "$pid"
}

# Waits up to $2 tenths of a second for process $1 to go. Succeeds once it has.
wait_gone() {
    local pid=$1 tenths=$2
    while [ "$tenths" -gt 0 ]; do
        is_our_broker "$pid" || return 0
        sleep 0.1
        tenths=$((tenths - 1))
    done
    ! is_our_broker "$pid"
}

pid=$(broker_pid)
if [ -z "$pid" ] || ! is_our_broker "$pid"; then
    rm -f "$PID_FILE"
    echo "stop.sh: no broker running"
    exit 0
fi

echo "stop.sh: stopping sluiced (pid $pid)"
kill -TERM "$pid" 2>/dev/null || true
if ! wait_gone "$pid" $((TERM_WAIT_S * 10)); then
    echo "stop.sh: sluiced (pid $pid) still running after ${TERM_WAIT_S} s: sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 50; then
        echo "stop.sh: cannot stop sluiced (pid $pid)" >&2
        exit 1
    fi
fi
# sluiced removes its ready file on a clean stop; after SIGKILL it is stale.
rm -f "$PID_FILE" "$READY_FILE"
echo "stop.sh: stopped"
