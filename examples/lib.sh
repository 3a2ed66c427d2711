# shellcheck shell=bash
# What every example's run.sh shares: finding the binaries, a private broker in a temporary
# folder that is stopped and removed on exit, and polling with a deadline. Sourced, not run.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
#   start_broker NAME [SLUICED-ARGS...]   # then $URL, $SLUICE_BROKER, $WORK are set
#   wait_for WANT DESCRIPTION COMMAND...  # until COMMAND prints a number >= WANT
#   stop_broker                           # SIGTERM; fails unless sluiced exits 0
#
# SLUICE_BIN_DIR picks the binaries (else the build tree, else PATH); KEEP=1 keeps the
# temporary folder; DEADLINE_S (default 30) bounds each wait.

DEADLINE_S=${DEADLINE_S:-30}

say() { printf '\n== %s\n' "$*"; }
die() { echo "run.sh: $*" >&2; exit 1; }

# ---- the binaries: $SLUICE_BIN_DIR, else the build tree, else PATH ----------------------------
if [ -n "${SLUICE_BIN_DIR:-}" ]; then
    BIN=$SLUICE_BIN_DIR
elif [ -x "$(dirname "${BASH_SOURCE[0]}")/../build/runtime/sluiced" ]; then
    BIN=$(cd "$(dirname "${BASH_SOURCE[0]}")/../build/runtime" && pwd)
else
    BIN=$(dirname "$(command -v sluiced || echo /nonexistent/sluiced)")
fi
SLUICED=$BIN/sluiced
SLUICE=$BIN/sluice
if [ ! -x "$SLUICED" ] || [ ! -x "$SLUICE" ]; then
    die "no sluiced/sluice in $BIN (set SLUICE_BIN_DIR)"
fi

PID=""
WORK=""
cleanup() {
    local rc=${1:-$?}
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
    if [ -n "$WORK" ]; then
        if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_broker NAME [ARGS...]: a temp folder $WORK and a sluiced in it (started there, so that
# relative paths in a pipeline's config land in it), on a free port. Returns once it is ready,
# which is after the --pipeline files are deployed.
start_broker() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-$1.XXXXXX")
    shift
    (cd "$WORK" && exec "$SLUICED" --data-dir data --listen tcp://127.0.0.1:0 \
        --http-listen none --kafka-listen none --ready-file ready.json "$@") \
        >"$WORK/sluiced.log" 2>&1 &
    PID=$!
    local end=$((SECONDS + DEADLINE_S))
    until [ -s "$WORK/ready.json" ]; do
        kill -0 "$PID" 2>/dev/null || { PID=""; die "sluiced exited during start-up"; }
        [ "$SECONDS" -lt "$end" ] || die "sluiced not ready after ${DEADLINE_S}s"
        sleep 0.1
    done
    URL=$(sed 's/.*"listen":"\([^"]*\)".*/\1/' "$WORK/ready.json")
    export SLUICE_BROKER=$URL # the default -b of every sluice command
}

# stop_broker: SIGTERM makes the instances commit and leave, then the broker must exit 0.
stop_broker() {
    say "stopping sluiced"
    kill -TERM "$PID"
    local rc=0
    wait "$PID" || rc=$?
    PID=""
    [ "$rc" -eq 0 ] || die "sluiced exited with status $rc"
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

count() { "$SLUICE" consume "$1" -F 'x\n' | wc -l; }
distinct_keys() { "$SLUICE" consume "$1" -F '%k\n' | sort -u | wc -l; }
# status_sum PIPELINE COUNTER: a counter summed over the instances (published every 2 s).
status_sum() {
    "$SLUICE" pipeline status "$1" --json | grep -o "\"$2\":[0-9]*" |
        awk -F: '{ s += $2 } END { print s + 0 }'
}
