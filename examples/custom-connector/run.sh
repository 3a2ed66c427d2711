#!/usr/bin/env bash
# Builds the wordcount_sink connector out of tree (CMake + pkg-config, against sluice/plugin.h
# only), drops the .so in a folder, starts a private broker with that folder on its plugin
# path and a pipeline naming the sink, sends it some text and shows the totals it wrote.
# SLUICE_BIN_DIR=/path/to/build/runtime picks the binaries (and the build tree's pkg-config
# file next to them); KEEP=1 keeps the temp dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEADLINE_S=${DEADLINE_S:-30}
say() { printf '\n== %s\n' "$*"; }
die() { echo "run.sh: $*" >&2; exit 1; }

BIN=${SLUICE_BIN_DIR:-$HERE/../../build/runtime}
[ -x "$BIN/sluiced" ] || BIN=$(dirname "$(command -v sluiced || echo /nonexistent/x)")
[ -x "$BIN/sluiced" ] || die "no sluiced (set SLUICE_BIN_DIR)"
SLUICE=$BIN/sluice
# A build tree has its own sluice-plugin.pc; an installed Sluice has one in lib/pkgconfig.
if [ -f "$BIN/../pkgconfig/sluice-plugin.pc" ]; then
    export PKG_CONFIG_PATH=$BIN/../pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fi
pkg-config --exists sluice-plugin || die "pkg-config finds no sluice-plugin.pc"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-custom-connector.XXXXXX")
PID=""
cleanup() {
    local rc=$?
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    [ "$rc" -eq 0 ] || tail -n 20 "$WORK/sluiced.log" >&2 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building wordcount_sink.so out of tree (cflags: $(pkg-config --cflags sluice-plugin))"
cmake -S "$HERE" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$WORK/build" >/dev/null
mkdir -p "$WORK/plugins"
cp "$WORK/build/wordcount_sink.so" "$WORK/plugins/"
"$SLUICE" plugin list --plugin-path "$WORK/plugins" | grep -E "NAME|wordcount_sink"

# Started in $WORK, where the sink's relative path (totals.txt) lands.
(cd "$WORK" && exec "$BIN/sluiced" --data-dir data --listen tcp://127.0.0.1:0 \
    --http-listen none --kafka-listen none --ready-file ready.json --plugin-path plugins \
    --pipeline "$HERE/pipeline.lua") >"$WORK/sluiced.log" 2>&1 &
PID=$!
end=$((SECONDS + DEADLINE_S))
until [ -s "$WORK/ready.json" ]; do
    kill -0 "$PID" 2>/dev/null || { PID=""; die "sluiced exited during start-up"; }
    [ "$SECONDS" -lt "$end" ] || die "sluiced not ready"
    sleep 0.1
done
export SLUICE_BROKER=$(sed 's/.*"listen":"\([^"]*\)".*/\1/' "$WORK/ready.json")

say "sending three lines of text"
printf 'the quick brown fox\njumps over\nthe lazy dog\n' | "$SLUICE" produce text
end=$((SECONDS + DEADLINE_S))
until [ "$(tail -n 1 "$WORK/totals.txt" 2>/dev/null)" = "3 9" ]; do
    [ "$SECONDS" -lt "$end" ] || die "the sink did not count 3 records and 9 words"
    sleep 0.2
done
say "totals written by the sink (records words)"
tail -n 1 "$WORK/totals.txt"
echo "OK: an out-of-tree connector ran in a pipeline"
