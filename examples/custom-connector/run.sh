#!/usr/bin/env bash
# Builds the wordcount_sink connector out of tree (CMake + pkg-config, against sluice/plugin.h
# only), drops the .so in a folder, starts a private broker with that folder on its plugin
# path and a pipeline naming the sink, sends it some text and shows the totals it wrote.
# SLUICE_BIN_DIR=/path/to/build/runtime picks the binaries (and the build tree's pkg-config
# file next to them); KEEP=1 keeps the temp dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"

# A build tree has its own sluice-plugin.pc; an installed Sluice has one in lib/pkgconfig.
if [ -f "$BIN/../pkgconfig/sluice-plugin.pc" ]; then
    export PKG_CONFIG_PATH=$BIN/../pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fi
pkg-config --exists sluice-plugin || die "pkg-config finds no sluice-plugin.pc"

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/sluice-wordcount-build.XXXXXX")
cleanup_build() {
    local rc=$?
    rm -rf "$BUILD"
    cleanup "$rc"
}
trap cleanup_build EXIT
say "building wordcount_sink.so out of tree (cflags: $(pkg-config --cflags sluice-plugin))"
cmake -S "$HERE" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" >/dev/null
mkdir -p "$BUILD/plugins"
cp "$BUILD/wordcount_sink.so" "$BUILD/plugins/"
"$SLUICE" plugin list --plugin-path "$BUILD/plugins" | grep -E "NAME|wordcount_sink"

# The broker runs in its temp folder, where the sink's relative path (totals.txt) lands.
start_broker custom-connector --plugin-path "$BUILD/plugins" --pipeline "$HERE/pipeline.lua"

say "sending three lines of text"
printf 'the quick brown fox\njumps over\nthe lazy dog\n' | "$SLUICE" produce text
totals() { tail -n 1 "$WORK/totals.txt" 2>/dev/null | awk '$1 == 3 { print $2 }'; }
wait_for 9 "words counted in 3 records" totals
say "totals written by the sink (records words)"
tail -n 1 "$WORK/totals.txt"
stop_broker
echo "OK: an out-of-tree connector ran in a pipeline"
