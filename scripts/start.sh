#!/usr/bin/env bash
# README command 1: installs the build dependencies, builds Sluice, installs sluice and sluiced
# into /usr/local, and (re)starts a local broker in the background with its data in ./data.
# Running it again rebuilds and restarts the broker; scripts/stop.sh stops it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PREFIX=/usr/local
DATA_DIR=./data
PID_FILE=$DATA_DIR/sluiced.pid
READY_FILE=$DATA_DIR/ready.json
LOG_FILE=$DATA_DIR/sluiced.log
READY_TIMEOUT_S=30

say() { echo "start.sh: $*"; }

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
else
    as_root=(sudo)
fi

# ---- build and install ---------------------------------------------------------------------

bash scripts/deps.sh build
say "building (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
say "installing sluice, sluiced, plugins and scripts into $PREFIX"
"${as_root[@]}" cmake --install build --prefix "$PREFIX"
"${as_root[@]}" ldconfig

SLUICE=$PREFIX/bin/sluice
SLUICED=$PREFIX/bin/sluiced
found=$(command -v sluice || true)
if [ "$found" != "$SLUICE" ]; then
    say "warning: 'sluice' on your PATH is ${found:-missing}, not $SLUICE" >&2
fi

# ---- (re)start the broker ------------------------------------------------------------------

bash scripts/stop.sh
mkdir -p "$DATA_DIR"
rm -f "$READY_FILE" "$PID_FILE"
if [ -f "$LOG_FILE" ]; then
    mv -f "$LOG_FILE" "$LOG_FILE.1"
fi

# setsid + nohup: the broker outlives this script and its terminal.
setsid nohup "$SLUICED" --data-dir "$DATA_DIR" --ready-file "$READY_FILE" \
    </dev/null >"$LOG_FILE" 2>&1 &
pid=$!
echo "$pid" >"$PID_FILE"

# Running and not a zombie: sluiced is this script's child until the script ends.
alive() {
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ]
}

fail_start() {
    say "$*" >&2
    echo "---- last lines of $LOG_FILE ----" >&2
    tail -n 30 "$LOG_FILE" >&2 || true
    bash scripts/stop.sh >/dev/null || true
    exit 1
}

# Ready when the ready file is written and the broker answers a request.
say "starting sluiced (pid $pid)"
deadline=$((SECONDS + READY_TIMEOUT_S))
while :; do
    if ! alive "$pid"; then
        fail_start "sluiced exited during start-up"
    fi
    if [ -s "$READY_FILE" ]; then
        # Ask the address it bound, whatever $SLUICE_BROKER says.
        listen=$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$READY_FILE")
        listen=${listen:-tcp://127.0.0.1:9400}
        if timeout 5 "$SLUICE" topic list -b "$listen" >/dev/null 2>&1; then
            break
        fi
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        fail_start "sluiced not ready after ${READY_TIMEOUT_S} s"
    fi
    sleep 0.2
done
# The broker's own word for its pid, should setsid have forked.
ready_pid=$(sed -n 's/.*"pid":[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$READY_FILE")
if [ -n "$ready_pid" ]; then
    pid=$ready_pid
    echo "$pid" >"$PID_FILE"
fi

# ---- example pipeline ----------------------------------------------------------------------
# The ad-click aggregator: clicks per ad per minute, in Lua, with its state in a changelog,
# fed by a generator of synthetic clicks. sluiced keeps both running (and restarts them with
# the broker) once deployed; stop.sh stops the broker and with it the pipelines' processes.
for PIPELINE in "$ROOT/examples/adclick/pipeline.lua" "$ROOT/examples/adclick/generator.lua"; do
    say "deploying the example pipeline $PIPELINE"
    if ! "$SLUICE" pipeline deploy "$PIPELINE" -b "$listen"; then
        fail_start "the example pipeline was refused"
    fi
done
# ---- end of example pipeline ---------------------------------------------------------------

cat <<EOF

Sluice is running: sluiced (pid $pid) serves $listen, with its data in $ROOT/data,
and runs the ad-click aggregator "adclick" fed by "adclick-clicks", 2,000 synthetic clicks a
second (examples/adclick/README.md). Each minute's counts per ad appear a little after the
minute ends (once its 5 s grace period has passed).

Try it:
  sluice consume clicks --follow --format '%k %v\n' --max 5
  sluice consume ad_clicks_per_minute --follow --format '%k %v\n'
  sluice pipeline status adclick
  sluice --help

Broker log:  $ROOT/data/sluiced.log
Metrics:     curl http://127.0.0.1:9402/metrics
Stop it:     scripts/stop.sh    (or: kill \$(cat data/sluiced.pid))
EOF
