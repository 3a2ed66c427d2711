#!/usr/bin/env bash
# Runs the same workload on Sluice and on Redis Streams, in one run, on 127.0.0.1, and prints
# one table.
#
#   scripts/bench-vs-redis.sh [--records N] [--size BYTES] [--runs K]
#
# Sluice: a private sluiced (from build/, built first if missing; SL_BUILD_DIR picks another
# build directory) with its data in a temporary directory, a topic of 6 partitions per run,
# and 'sluice bench'. Redis: a private redis-server from Debian (installed if missing) with
# appendonly yes, appendfsync everysec and no RDB snapshots, one stream per run, and
# redis-benchmark. Every measurement runs K times (default 3), Sluice and Redis alternately,
# each run on a new topic or stream (the previous one deleted, and Redis's append-only file
# rewritten), and the table shows the medians; every single run is printed above it. Both servers and all
# load generators share this machine's cores. Everything started is stopped, and every
# temporary file removed, on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${SL_BUILD_DIR:-build}
RECORDS=1000000
SIZE=100
RUNS=3
PARTITIONS=6

# Redis: XADD as redis-benchmark runs it with -P 64 (its default 50 connections).
XADD_CLIENTS=50
XADD_PIPELINE=64
# Redis: XREADGROUP, COUNT entries per call. Of the settings tried on these machines this one
# read fastest. The number of calls is made a multiple of the pipeline depth, so that
# redis-benchmark sends exactly that many and every call returns COUNT entries (checked after
# each run through the group's entries-read).
XREAD_COUNT=100
XREAD_CLIENTS=50
XREAD_PIPELINE=8
# Sluice: produce latency at a fixed offered rate.
LATENCY_RATE=10000
LATENCY_SECONDS=5

say() { echo "bench-vs-redis: $*" >&2; }
die() {
    say "$*"
    exit 1
}

usage() {
    cat <<EOF
Usage: scripts/bench-vs-redis.sh [--records N] [--size BYTES] [--runs K]

Runs the same workload (N records of BYTES-byte values) on Sluice and on Redis Streams on
127.0.0.1 and prints one table of medians over K runs.

  --records N     records per produce and consume run (default $RECORDS)
  --size BYTES    value size (default $SIZE, at most 100000)
  --runs K        runs of each measurement (default $RUNS)
  -h, --help      show this help

SL_BUILD_DIR names the build directory to take sluice and sluiced from (default build).
EOF
}

whole_number() { [[ $2 =~ ^[0-9]+$ ]] || {
    say "$1 wants a whole number, not \"$2\""
    exit 2
}; }

while [ $# -gt 0 ]; do
    case $1 in
    --records)
        whole_number "$1" "${2:-}"
        RECORDS=$2
        shift 2
        ;;
    --size)
        whole_number "$1" "${2:-}"
        SIZE=$2
        shift 2
        ;;
    --runs)
        whole_number "$1" "${2:-}"
        RUNS=$2
        shift 2
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        say "unknown argument \"$1\""
        usage >&2
        exit 2
        ;;
    esac
done
[ "$RUNS" -ge 1 ] || die "--runs must be at least 1"
[ "$SIZE" -le 100000 ] || die "--size must be at most 100000 (it is passed on redis-benchmark's command line)"
# Whole pipelines of whole calls: truncating division on purpose.
# shellcheck disable=SC2017
XREAD_CALLS=$((RECORDS / (XREAD_COUNT * XREAD_PIPELINE) * XREAD_PIPELINE))
XREAD_RECORDS=$((XREAD_CALLS * XREAD_COUNT))
[ "$XREAD_CALLS" -gt 0 ] || die "--records must be at least $((XREAD_COUNT * XREAD_PIPELINE))"

# ---- dependencies ------------------------------------------------------------------------

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for package in redis-server redis-tools; do
    installed "$package" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "installing ${missing[*]} needs root or sudo"
        as_root=(sudo)
    fi
    say "installing ${missing[*]}"
    "${as_root[@]}" apt-get update -qq >/dev/null
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" </dev/null >/dev/null
fi
for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done

SLUICE=$BUILD_DIR/runtime/sluice
SLUICED=$BUILD_DIR/runtime/sluiced
if [ ! -x "$SLUICED" ] || [ ! -x "$SLUICE" ] || ! "$SLUICE" bench --help >/dev/null 2>&1; then
    say "building sluice and sluiced in $BUILD_DIR/"
    bash scripts/deps.sh build
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD_DIR" -j2 --target sluice_cli sluiced >/dev/null
fi
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
case ${BUILD_TYPE:-none} in
Release | RelWithDebInfo) ;;
*) say "warning: $BUILD_DIR/ is a ${BUILD_TYPE:-default (unoptimized)} build; numbers will be low" ;;
esac

# ---- servers -----------------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-vs-redis.XXXXXX")
SLUICED_PID=""
REDIS_PID=""

# Stops process $1 with SIGTERM, then SIGKILL after 10 s.
stop_process() {
    local pid=$1 tenths=100
    kill -TERM "$pid" 2>/dev/null || return 0
    while [ "$tenths" -gt 0 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
        tenths=$((tenths - 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    [ -n "$SLUICED_PID" ] && stop_process "$SLUICED_PID"
    [ -n "$REDIS_PID" ] && stop_process "$REDIS_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Shows the end of a server's log when something failed.
show_log() {
    echo "---- last lines of $1 ----" >&2
    tail -n 20 "$1" >&2 || true
}

start_sluiced() {
    "$SLUICED" --data-dir "$TMP/sluice" --listen tcp://127.0.0.1:0 --http-listen none \
        --ready-file "$TMP/sluiced.ready" --log-level warn >"$TMP/sluiced.log" 2>&1 &
    SLUICED_PID=$!
    local tenths=300
    while [ ! -s "$TMP/sluiced.ready" ]; do
        if ! kill -0 "$SLUICED_PID" 2>/dev/null; then
            show_log "$TMP/sluiced.log"
            die "sluiced exited during start-up"
        fi
        tenths=$((tenths - 1))
        [ "$tenths" -gt 0 ] || die "sluiced not ready after 30 s"
        sleep 0.1
    done
    SLUICE_URL=$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$TMP/sluiced.ready")
    [ -n "$SLUICE_URL" ] || die "no listen address in sluiced's ready file"
}

# A free 127.0.0.1 port: nothing answers there. redis-server refuses to start on a taken one,
# which start_redis notices and retries.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

start_redis() {
    local tries tenths
    mkdir -p "$TMP/redis"
    for tries in 1 2 3 4 5; do
        REDIS_PORT=$(free_port)
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP/redis" \
            --appendonly yes --appendfsync everysec --save '' --daemonize no \
            --logfile "$TMP/redis.log" >/dev/null 2>&1 &
        REDIS_PID=$!
        tenths=100
        while [ "$tenths" -gt 0 ] && kill -0 "$REDIS_PID" 2>/dev/null; do
            if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then
                return
            fi
            sleep 0.1
            tenths=$((tenths - 1))
        done
        stop_process "$REDIS_PID"
        REDIS_PID=""
    done
    show_log "$TMP/redis.log"
    die "redis-server did not start ($tries tries)"
}

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# ---- measurements ------------------------------------------------------------------------

# json_field NAME: the number of field NAME in the JSON object on stdin.
json_field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }

# The requests/s of the one test in redis-benchmark --csv output on stdin.
csv_rps() { tail -n 1 | cut -d, -f2 | tr -d '"'; }

# sluice_bench ARGS...: runs 'sluice bench ARGS --json' and prints its JSON; fails loudly.
sluice_bench() {
    local out
    if ! out=$("$SLUICE" -b "$SLUICE_URL" bench "$@" --json); then
        kill -0 "$SLUICED_PID" 2>/dev/null || show_log "$TMP/sluiced.log"
        die "sluice bench $* failed"
    fi
    echo "$out"
}

# The value every XADD carries: SIZE printable characters (Sluice makes its own, alike).
VALUE=$(head -c $((SIZE * 2 + 64)) /dev/urandom | base64 -w 0 | tr -dc 'A-Za-z0-9' | head -c "$SIZE")
while [ "${#VALUE}" -lt "$SIZE" ]; do VALUE=$VALUE$VALUE; done
VALUE=${VALUE:0:$SIZE}

declare -a SL_PRODUCE SL_CONSUME SL_P50 SL_P99 SL_P999 RD_XADD RD_XREAD RD_XREAD_NOACK

sluice_produce() {
    local run=$1 json
    "$SLUICE" -b "$SLUICE_URL" topic create "bench-$run" --partitions "$PARTITIONS" >/dev/null
    json=$(sluice_bench produce "bench-$run" --records "$RECORDS" --size "$SIZE" --acks 1)
    SL_PRODUCE+=("$(json_field records_per_sec <<<"$json")")
    say "run $run: sluice produce            ${SL_PRODUCE[-1]} records/s"
}

redis_xadd() {
    local run=$1 rps len
    rps=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$XADD_CLIENTS" -P "$XADD_PIPELINE" \
        -n "$RECORDS" --csv xadd "stream-$run" '*' f "$VALUE" | csv_rps)
    len=$(rcli xlen "stream-$run")
    [ "$len" -ge "$RECORDS" ] || die "stream-$run holds $len entries, not $RECORDS"
    RD_XADD+=("$rps")
    say "run $run: redis XADD                $rps records/s"
}

sluice_consume() {
    local run=$1 json
    json=$(sluice_bench consume "bench-$run" --records "$RECORDS")
    SL_CONSUME+=("$(json_field records_per_sec <<<"$json")")
    say "run $run: sluice consume            ${SL_CONSUME[-1]} records/s"
}

# The entries-read of group $2 on stream $1.
entries_read() {
    rcli xinfo groups "$1" | awk -v g="$2" '
        prev == "name" { cur = $0 }
        prev == "entries-read" && cur == g { print; exit }
        { prev = $0 }'
}

# redis_xreadgroup RUN [NOACK]: reads XREAD_RECORDS entries of stream-RUN through a new group.
redis_xreadgroup() {
    local run=$1 noack=${2:-} group rps read
    local flags=()
    [ -n "$noack" ] && flags=(noack)
    group=g$run${noack:+-noack}
    rcli xgroup create "stream-$run" "$group" 0 >/dev/null
    rps=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$XREAD_CLIENTS" -P "$XREAD_PIPELINE" \
        -n "$XREAD_CALLS" --csv xreadgroup group "$group" c count "$XREAD_COUNT" "${flags[@]}" \
        streams "stream-$run" '>' | csv_rps)
    read=$(entries_read "stream-$run" "$group")
    [ "$read" = "$XREAD_RECORDS" ] ||
        die "group $group read $read entries in $XREAD_CALLS calls, not $XREAD_RECORDS"
    rcli xgroup destroy "stream-$run" "$group" >/dev/null
    rps=$(awk -v r="$rps" -v c="$XREAD_COUNT" 'BEGIN { printf "%.1f", r * c }')
    if [ -n "$noack" ]; then
        RD_XREAD_NOACK+=("$rps")
        say "run $run: redis XREADGROUP NOACK    $rps records/s"
    else
        RD_XREAD+=("$rps")
        say "run $run: redis XREADGROUP          $rps records/s"
    fi
}

sluice_latency() {
    local run=$1 json
    "$SLUICE" -b "$SLUICE_URL" topic create "latency-$run" --partitions "$PARTITIONS" >/dev/null
    json=$(sluice_bench produce "latency-$run" --records $((LATENCY_RATE * LATENCY_SECONDS)) \
        --size "$SIZE" --acks 1 --linger-ms 0 --rate "$LATENCY_RATE")
    SL_P50+=("$(json_field p50_ms <<<"$json")")
    SL_P99+=("$(json_field p99_ms <<<"$json")")
    SL_P999+=("$(json_field p999_ms <<<"$json")")
    say "run $run: sluice produce at $LATENCY_RATE/s   p50 ${SL_P50[-1]} ms, p99 ${SL_P99[-1]} ms, p99.9 ${SL_P999[-1]} ms"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Every run starts alike: the topic and the stream of a run are deleted after it, and Redis
# rewrites its append-only file down to the empty data set before the next run.
sluice_reset() {
    "$SLUICE" -b "$SLUICE_URL" topic delete "bench-$1" >/dev/null
}

redis_reset() {
    local tenths=600
    rcli del "stream-$1" >/dev/null
    rcli bgrewriteaof >/dev/null
    while rcli info persistence | grep -qE '^aof_rewrite_(in_progress|scheduled):1'; do
        tenths=$((tenths - 1))
        [ "$tenths" -gt 0 ] || die "redis-server still rewriting its append-only file after 60 s"
        sleep 0.1
    done
}

start_sluiced
start_redis
say "sluiced $SLUICE_URL, redis-server 127.0.0.1:$REDIS_PORT, in $TMP"
say "$RECORDS records of $SIZE bytes, $RUNS runs of each measurement"
for run in $(seq 1 "$RUNS"); do
    sluice_produce "$run"
    sluice_consume "$run"
    sluice_reset "$run"
    redis_xadd "$run"
    redis_xreadgroup "$run" NOACK
    redis_xreadgroup "$run"
    redis_reset "$run"
done
for run in $(seq 1 "$RUNS"); do
    sluice_latency "$run"
done

# ---- the table ---------------------------------------------------------------------------

SP=$(median "${SL_PRODUCE[@]}")
SC=$(median "${SL_CONSUME[@]}")
RX=$(median "${RD_XADD[@]}")
RR=$(median "${RD_XREAD[@]}")
RN=$(median "${RD_XREAD_NOACK[@]}")
P50=$(median "${SL_P50[@]}")
P99=$(median "${SL_P99[@]}")
P999=$(median "${SL_P999[@]}")

awk -v sp="$SP" -v sc="$SC" -v rx="$RX" -v rr="$RR" -v rn="$RN" -v size="$SIZE" \
    -v p50="$P50" -v p99="$P99" -v p999="$P999" -v rate="$LATENCY_RATE" '
function group(n,    s, out) {
    s = sprintf("%.0f", n)
    out = ""
    while (length(s) > 3) {
        out = "," substr(s, length(s) - 2) out
        s = substr(s, 1, length(s) - 3)
    }
    return s out
}
function row(what, sluice, redis, ratio) {
    printf "| %-50s | %12s | %12s | %6s |\n", what, sluice, redis, ratio
}
function times(a, b) { return sprintf("%.1fx", a / b) }
function mb(x) { return sprintf("%.1f", x * size / 1e6) }
BEGIN {
    row("workload", "Sluice", "Redis", "ratio")
    printf "|%s|%s|%s|%s|\n", "----------------------------------------------------", \
        "-------------:", "-------------:", "-------:"
    row("produce, records/s (Sluice acks=1, Redis XADD)", group(sp), group(rx), times(sp, rx))
    row("produce, MB/s", mb(sp), mb(rx), times(sp, rx))
    row("consume, records/s (Redis XREADGROUP)", group(sc), group(rr), times(sc, rr))
    row("consume, records/s (Redis XREADGROUP NOACK)", group(sc), group(rn), times(sc, rn))
    row("consume, MB/s (Redis XREADGROUP NOACK)", mb(sc), mb(rn), times(sc, rn))
    lat = "produce latency at " group(rate) " records/s"
    row(lat ", p50 ms", p50, "-", "-")
    row(lat ", p99 ms", p99, "-", "-")
    row(lat ", p99.9 ms", p999, "-", "-")
}'

cat <<EOF

$RECORDS records of $SIZE-byte values; medians of $RUNS runs; everything on 127.0.0.1, with
sluiced, redis-server and the load generators sharing this machine ($(nproc) cores). MB/s counts
value bytes (10^6 per MB). How each number was measured:
- Sluice produce: sluice bench produce TOPIC --records $RECORDS --size $SIZE --acks 1 (one
  producer, no keys, linger.ms 5, batch.size 131072, no compression) into a new $PARTITIONS-partition
  topic; acknowledged records from the first send to the last acknowledgement.
- Redis produce: redis-benchmark -c $XADD_CLIENTS -P $XADD_PIPELINE -n $RECORDS xadd STREAM '*' f VALUE
  (a $SIZE-byte VALUE) into a new stream; requests/s as redis-benchmark reports it, each
  request one XADD answered by the server (appendonly yes, appendfsync everysec).
- Sluice consume: sluice bench consume TOPIC --records $RECORDS: one consumer assigned to every
  partition from the beginning; every record decoded by the client library (sl_consumer_poll)
  and the first byte of its value read.
- Redis consume: redis-benchmark -c $XREAD_CLIENTS -P $XREAD_PIPELINE -n $XREAD_CALLS xreadgroup group G c
  count $XREAD_COUNT [noack] streams STREAM '>' on a new group: requests/s x $XREAD_COUNT; after each run
  the group's entries-read is checked to be $XREAD_RECORDS, so every call returned $XREAD_COUNT entries
  (the client parses every entry of every reply). Without NOACK each delivered entry enters
  the group's pending list, which Redis also writes to its append-only file.
- Latency: sluice bench produce TOPIC --records $((LATENCY_RATE * LATENCY_SECONDS)) --rate $LATENCY_RATE --acks 1 --linger-ms 0:
  send-to-acknowledgement time of every record at a fixed offered rate. redis-benchmark
  has no fixed-rate mode, so Redis has no number here.
EOF
