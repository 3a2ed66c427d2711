#!/usr/bin/env bash
# README command 2, and what CI runs (.ci/run):
#
#   scripts/test.sh          ASan+UBSan build (build-asan/) and every ctest test, then each
#                            libFuzzer target (build-fuzz/) for a short while
#   scripts/test.sh --tsan   ThreadSanitizer build (build-tsan/) and every ctest test
#
# SL_FUZZ_SECONDS (default 20) is how long each fuzzer runs. A missing tool, a failed build, a
# failed test and a fuzzer crash all fail the run (exit 1); nothing is skipped. The last line
# is a plain summary, "summary: N passed, M failed", counting tests and fuzzers.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
JOBS=2
FUZZ_SECONDS=${SL_FUZZ_SECONDS:-20}
# The fuzz targets the tree must have; any other *_fuzz target found is run as well.
EXPECTED_FUZZERS=(batch_fuzz native_request_fuzz decompress_fuzz kafka_request_fuzz lua_msgpack_fuzz
    pipeline_fuzz changelog_fuzz json_field_fuzz cluster_record_fuzz)

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

tsan=false
for arg in "$@"; do
    case "$arg" in
    --tsan) tsan=true ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "test.sh: unknown argument \"$arg\"" >&2
        usage >&2
        exit 2
        ;;
    esac
done
case "$FUZZ_SECONDS" in
'' | *[!0-9]*)
    echo "test.sh: SL_FUZZ_SECONDS must be a whole number of seconds" >&2
    exit 2
    ;;
esac

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/tests/tsan.supp
# Tests and scripts must use Debian's python, whatever python3 comes first on PATH.
PYTHON=/usr/bin/python3

TMP_ROOT=$(mktemp -d)
trap 'rm -rf "$TMP_ROOT"' EXIT

passed=0
failed=0
report=()

say() { echo "test.sh: $*"; }
section() { printf '\n==== %s ====\n' "$*"; }
note() { report+=("$(printf '  %-28s %s' "$1" "$2")"); }

finish() {
    section "summary"
    printf '%s\n' "${report[@]}"
    echo "summary: $passed passed, $failed failed"
    if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
        exit 0
    fi
    exit 1
}

# A step that is not itself a test (install, configure, build): counts only when it fails.
step() {
    local name=$1
    shift
    local start=$SECONDS
    if "$@"; then
        note "$name" "ok ($((SECONDS - start)) s)"
        return 0
    fi
    note "$name" "FAILED"
    failed=$((failed + 1))
    return 1
}

# shellcheck disable=SC2317 # called through step
check_tools() {
    local missing=() tool
    for tool in "$@"; do
        if [ "${tool#/}" != "$tool" ]; then
            [ -x "$tool" ] || missing+=("$tool")
        else
            command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "missing tools: ${missing[*]}" >&2
        return 1
    fi
}

# ---- ctest -----------------------------------------------------------------------------------

# run_ctest BUILD_DIR [WRAPPER...]: runs every test; adds what ctest counted to the totals.
run_ctest() {
    local dir=$1 log
    shift
    log=$TMP_ROOT/ctest-$(basename "$dir").log
    local rc=0
    "$@" ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$JOBS" 2>&1 |
        tee "$log" || rc=$?
    # "100% tests passed, 0 tests failed out of 12"
    local line ok bad total
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" |
        tail -n 1 || true)
    if [ -z "$line" ]; then
        note "ctest ($dir)" "FAILED (no test summary; exit $rc)"
        failed=$((failed + 1))
        return 1
    fi
    bad=$(sed -E 's/.* ([0-9]+) tests? failed.*/\1/' <<<"$line")
    total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
    ok=$((total - bad))
    passed=$((passed + ok))
    failed=$((failed + bad))
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        failed=$((failed + 1)) # ctest failed for a reason its count does not show
        note "ctest ($dir)" "FAILED (exit $rc; $ok of $total tests passed)"
        return 1
    fi
    if [ "$bad" -gt 0 ]; then
        note "ctest ($dir)" "FAILED ($bad of $total tests failed)"
        return 1
    fi
    note "ctest ($dir)" "$ok of $total tests passed"
}

# configure_and_build BUILD_DIR CMAKE_ARGS...
configure_and_build() {
    local dir=$1
    shift
    section "configure and build $dir"
    step "configure $dir" cmake -S . -B "$dir" "$@" &&
        step "build $dir" cmake --build "$dir" -j"$JOBS"
}

# ---- fuzzing ---------------------------------------------------------------------------------

# The *_fuzz targets the fuzz build defines, with the expected ones always included (so that
# one that is missing fails the build rather than being skipped).
fuzz_targets() {
    {
        printf '%s\n' "${EXPECTED_FUZZERS[@]}"
        cmake --build build-fuzz --target help 2>/dev/null |
            grep -oE '(^|[^A-Za-z0-9_/.])[A-Za-z0-9_]+_fuzz($|[^A-Za-z0-9_])' |
            grep -oE '[A-Za-z0-9_]+_fuzz'
    } | sort -u
}

find_fuzzer() {
    find build-fuzz -path '*/CMakeFiles' -prune -o -type f -name "$1" -perm -u+x -print |
        head -n 1
}

# run_fuzzer NAME: runs it for FUZZ_SECONDS on a copy of its seed corpus.
run_fuzzer() {
    local name=$1 bin work seeds="" d runs
    bin=$(find_fuzzer "$name")
    if [ -z "$bin" ]; then
        note "fuzz $name" "FAILED (no executable in build-fuzz/)"
        failed=$((failed + 1))
        return 1
    fi
    work=$TMP_ROOT/fuzz-$name
    mkdir -p "$work/corpus" "$work/artifacts"
    for d in "tests/fuzz/corpus/$name" "tests/fuzz/corpus/${name%_fuzz}"; do
        if [ -d "$d" ]; then
            seeds=$d
            cp -R "$d/." "$work/corpus/"
            break
        fi
    done
    say "fuzzing $name for ${FUZZ_SECONDS} s (seeds: ${seeds:-none})"
    local log=build-fuzz/$name.log rc=0
    (cd "$work" && timeout $((FUZZ_SECONDS + 120)) "$ROOT/$bin" \
        -max_total_time="$FUZZ_SECONDS" -timeout=25 -rss_limit_mb=2560 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/" "$work/corpus") >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ] && [ "${runs:-0}" -gt 0 ]; then
        note "fuzz $name" "ok ($runs runs in ${FUZZ_SECONDS} s, no crash)"
        passed=$((passed + 1))
        return 0
    fi
    local keep=build-fuzz/artifacts/$name
    rm -rf "$keep"
    mkdir -p "$keep"
    cp -R "$work/artifacts/." "$keep/"
    # The report itself (from its first error line), then how the run ended.
    local first
    first=$(grep -n -m 1 -E '==ERROR|ERROR: libFuzzer|runtime error:|DEADLYSIGNAL' "$log" |
        cut -d: -f1 || true)
    if [ -n "$first" ]; then
        echo "---- $name: report from $log ----"
        sed -n "${first},$((first + 40))p" "$log"
    fi
    echo "---- $name: end of $log ----"
    tail -n 12 "$log"
    echo "---- crashing inputs (if any) kept in $keep/: $(find "$keep" -type f -printf '%f ')"
    if [ "$rc" -eq 0 ]; then
        note "fuzz $name" "FAILED (ran no input; is it a libFuzzer binary?)"
    else
        note "fuzz $name" "FAILED (exit $rc; see $log, inputs in $keep/)"
    fi
    failed=$((failed + 1))
    return 1
}

run_fuzzers() {
    section "configure and build build-fuzz (clang, libFuzzer)"
    # -O1 -g without -DNDEBUG: asserts stay on while fuzzing.
    step "configure build-fuzz" env CC=clang cmake -S . -B build-fuzz \
        -DCMAKE_C_COMPILER=clang -DSL_FUZZ=ON -DSL_SANITIZE="address;undefined" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" || return 1
    local targets=()
    mapfile -t targets < <(fuzz_targets)
    step "build build-fuzz (${targets[*]})" \
        cmake --build build-fuzz -j"$JOBS" --target "${targets[@]}" || return 1
    section "fuzzing (${FUZZ_SECONDS} s each)"
    local name rc=0
    for name in "${targets[@]}"; do
        run_fuzzer "$name" || rc=1
    done
    return "$rc"
}

# ---- main ------------------------------------------------------------------------------------

section "dependencies"
if ! step "install test dependencies" bash scripts/deps.sh test ||
    ! step "check tools" check_tools cmake ctest cc gcc clang curl ps timeout "$PYTHON"; then
    finish
fi

if $tsan; then
    # ThreadSanitizer needs a fixed address layout on kernels with high ASLR entropy.
    wrapper=()
    if setarch "$(uname -m)" -R true 2>/dev/null; then
        wrapper=(setarch "$(uname -m)" -R)
    fi
    if configure_and_build build-tsan -DSL_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug; then
        section "ctest build-tsan"
        run_ctest build-tsan "${wrapper[@]}" || true
    fi
    finish
fi

if configure_and_build build-asan -DSL_SANITIZE="address;undefined" -DCMAKE_BUILD_TYPE=Debug; then
    section "ctest build-asan"
    run_ctest build-asan || true
fi
run_fuzzers || true
finish
