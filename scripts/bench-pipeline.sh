#!/usr/bin/env bash
# Measures how fast a pipeline stage drains its input: records/s from deploy to the moment its
# consumer group has committed the whole input (outputs acknowledged first), broker included.
#
#   scripts/bench-pipeline.sh [--records N] [--instances I] [--runs K]
#
# A private sluiced (from build/, or SL_BUILD_DIR) in a temporary directory; per run a new
# 6-partition input topic filled with N 100-byte records by 'sluice bench produce', then one
# stage deployed on it, for each of: a Lua map (scripts/map.lua, value -> upper-cased value),
# a Lua script that decodes and re-encodes JSON, and the C plugin 'upper'. Prints each run and
# the medians. Everything started is stopped, and every temporary file removed, on exit.
set -euo pipefail

BENCH_NAME=bench-pipeline
# shellcheck source=bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
RECORDS=1000000
INSTANCES=2
RUNS=3
TIMEOUT_S=600

while [ $# -gt 0 ]; do
    case $1 in
    --records) RECORDS=$2; shift 2 ;;
    --instances) INSTANCES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    -h | --help)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

start_private_broker

cat >"$WORK/json.lua" <<'EOF'
function process(record, ctx)
  local o = json.decode(record.value)
  o.n = o.n + 1
  return { key = record.key, value = json.encode(o) }
end
EOF

# stage_line KIND: the processor entry of the pipeline for one kind of stage.
stage_line() {
    case $1 in
    lua-map) echo 'map = "record.value:upper()"' ;;
    lua-json) echo "script = \"$WORK/json.lua\"" ;;
    c-upper) echo 'plugin = "upper"' ;;
    esac
}

# fill TOPIC: N records; JSON values for the JSON stage, 100 bytes either way.
fill() {
    "$SLUICE" topic create "$1" --partitions 6 >/dev/null
    if [ "$2" = lua-json ]; then
        awk -v n="$RECORDS" 'BEGIN { for (i = 0; i < n; i++)
            printf "{\"n\":%d,\"pad\":\"%080d\"}\n", i, 0 }' |
            "$SLUICE" produce "$1" --linger-ms 20 >/dev/null
    else
        "$SLUICE" bench produce "$1" --records "$RECORDS" --size 100 --acks 1 >/dev/null
    fi
}

run_one() { # KIND RUN -> records/s on stdout
    local kind=$1 run=$2 topic="in-$1-$2" name="bench-$1-$2"
    fill "$topic" "$kind"
    cat >"$WORK/$name.lua" <<EOF
return { name = "$name", topics = { ["out-$kind-$run"] = 6 },
  processors = { { name = "s", input = "$topic", output = "out-$kind-$run", instances = $INSTANCES,
                   $(stage_line "$kind") } } }
EOF
    local start end
    start=$(date +%s.%N)
    "$SLUICE" pipeline deploy "$WORK/$name.lua" >/dev/null
    local deadline=$((SECONDS + TIMEOUT_S))
    local n state
    while read -r n state <<<"$(committed "sluice.$name.s" 6)" && [ "$state" != done ]; do
        [ $SECONDS -lt $deadline ] || die "$name did not finish in $TIMEOUT_S s"
        sleep 0.1
    done
    end=$(date +%s.%N)
    "$SLUICE" pipeline stop "$name" >/dev/null
    awk -v n="$RECORDS" -v a="$start" -v b="$end" 'BEGIN { printf "%d\n", n / (b - a) }'
}

printf '%-10s' "stage"
for r in $(seq "$RUNS"); do printf '  %12s' "run $r"; done
printf '  %12s\n' "median rec/s"
for kind in lua-map lua-json c-upper; do
    results=()
    for r in $(seq "$RUNS"); do
        results+=("$(run_one "$kind" "$r")")
    done
    printf '%-10s' "$kind"
    for v in "${results[@]}"; do printf '  %12s' "$v"; done
    printf '  %12s\n' "$(printf '%s\n' "${results[@]}" | median)"
done
say "$RECORDS records of 100 bytes per run, 6 partitions, $INSTANCES instances, acks=all outputs"
