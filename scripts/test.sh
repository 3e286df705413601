#!/usr/bin/env bash
# test.sh: everything CI checks. Installs missing packages (deps.sh), checks C formatting when
# clang-format is installed, then builds and runs every ctest suite twice: a Release build in
# build/ and an ASan+UBSan Debug build in build-asan/; then a ThreadSanitizer build in
# build-tsan/ runs the suites where threads meet (ctest label `threads`), and any report of a
# data race, in splicer or in a test, fails it. Prints each stage's duration. Exits non-zero if
# anything failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_DIR=${TEST_LOG_DIR:-$PWD/build-logs}
JOBS=${TEST_JOBS:-2} # parallel compile jobs, and ctest entries run at once

# Real peers for the tests that would otherwise be skipped: prometheus (promtool validates the
# /metrics exposition; a real server scrapes it), haproxy (PROXY protocol interop), openssl and
# curl (TLS backends and clients for SNI routing), nginx (a real HTTP server for HTTP health
# checks). clang-format checks the formatting below.
scripts/deps.sh prometheus clang-format haproxy openssl curl nginx
# TEST_BROWSER=1: also headless Chromium and chromedriver for integration.status_page.browser
# (15 to 40 s per build, but some 300 MB to install); without them that entry is skipped.
if [[ ${TEST_BROWSER:-0} == 1 ]]; then
    scripts/deps.sh chromium chromium-driver
fi
mkdir -p "$LOG_DIR"

results=()   # one "name: OK|FAILED|... (duration)" line per stage, for the summary
declare -A skip_why skip_in # skipped ctest entry -> its reason, and the builds that skipped it
skip_order=()
failures=0
passed=0
failed=0
skipped=0

# record NAME STATUS [SECONDS]
record() {
    local took=""
    [[ -n ${3:-} ]] && took=" ($(duration "$3"))"
    results+=("$(printf '%-22s %s%s' "$1" "$2" "$took")")
    if [[ $2 != OK* && $2 != skipped* ]]; then
        failures=$((failures + 1))
    fi
}

banner() { printf '\n==== %s ====\n' "$*"; }
duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

format_check() {
    banner "clang-format"
    local t0=$SECONDS
    if ! command -v clang-format >/dev/null 2>&1; then
        echo "clang-format is not installed: formatting not checked"
        record format "skipped (no clang-format)"
        return 0
    fi
    local files=()
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        mapfile -t files < <(git ls-files -- '*.c' '*.h')
    else
        mapfile -t files < <(find proxy include tests scripts bench -name '*.[ch]' 2>/dev/null)
    fi
    if ((${#files[@]} == 0)); then
        record format "OK (no files)"
    elif clang-format --dry-run --Werror "${files[@]}"; then
        record format "OK (${#files[@]} files)" $((SECONDS - t0))
    else
        echo "fix with: clang-format -i <file>"
        record format FAILED $((SECONDS - t0))
    fi
}

# build_and_test NAME DIR [cmake args...] [-- ctest args...]: configure, build and run ctest
# (every entry, or those the ctest args select); records each step.
build_and_test() {
    local name=$1 dir=$2
    shift 2
    local cmake_args=() ctest_args=()
    while (($# > 0)) && [[ $1 != -- ]]; do
        cmake_args+=("$1")
        shift
    done
    (($# > 0)) && shift
    ctest_args=("$@")
    banner "$name: configure and build ($dir)"
    local t0=$SECONDS
    if ! cmake -S . -B "$dir" "${cmake_args[@]}" || ! cmake --build "$dir" -j"$JOBS"; then
        record "$name build" FAILED $((SECONDS - t0))
        record "$name tests" "not run"
        return 1
    fi
    record "$name build" OK $((SECONDS - t0))

    banner "$name: ctest"
    local log=$LOG_DIR/ctest-$name.log rc=0
    t0=$SECONDS
    # Two entries at a time: most of a suite's time is spent waiting on sockets, timers and
    # child processes, and the three builds' suites fit CI's 15 minutes on 2 cores only so.
    ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$JOBS" "${ctest_args[@]}" \
        2>&1 | tee "$log" || rc=$?
    # "100% tests passed, 0 tests failed out of 12": ctest counts a skipped entry as passed, so
    # the skipped ones (listed under "The following tests did not run:") are taken out.
    local line p=0 f=0 s=0 total
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 ||
        true)
    local names=()
    mapfile -t names < <(sed -nE 's/^[[:space:]]+[0-9]+ - (.*) \(Skipped\)$/\1/p' "$log")
    s=${#names[@]}
    if [[ -n $line ]]; then
        total=${line##* out of }
        f=$(sed -E 's/.* ([0-9]+) tests? failed.*/\1/' <<<"$line")
        p=$((total - f - s))
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    local n
    for n in "${names[@]}"; do
        if [[ -z ${skip_in[$n]:-} ]]; then
            skip_order+=("$n")
            skip_in[$n]=$name
            skip_why[$n]=$(skip_reason "$dir" "$n")
        else
            skip_in[$n]+=", $name"
        fi
    done
    if ((rc == 0)); then
        record "$name tests" "OK ($p passed, $s skipped)" $((SECONDS - t0))
    else
        record "$name tests" "FAILED ($f of $((p + f)) failed, $s skipped, rc $rc)" \
            $((SECONDS - t0))
    fi
}

# tsan_stage: the ThreadSanitizer build runs the entries labelled `threads`. Every process
# inherits TSAN_OPTIONS: a report goes to a file of its own under $LOG_DIR/tsan (splicer's
# stderr, where it would go by default, is a temporary file of the harness, removed with the
# test), the process goes on (halt_on_error=0) so one race does not hide the next, and exits 66
# at its end. A test binary's forked case that exits 66 is failed by Check ("Early exit with
# return value 66"); for splicer the report files decide: any file fails the stage, and each is
# printed. tests/tsan.supp lists the reports known to be safe, each with its reason.
tsan_stage() {
    local dir=$LOG_DIR/tsan
    rm -rf "$dir"
    mkdir -p "$dir"
    local opts="log_path=$dir/tsan halt_on_error=0 exitcode=66 second_deadlock_stack=1"
    [[ -f tests/tsan.supp ]] && opts+=" suppressions=$PWD/tests/tsan.supp"
    TSAN_OPTIONS="$opts" build_and_test tsan build-tsan -DSPLICER_TSAN=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -- -L threads || return 0
    local reports=()
    mapfile -t reports < <(find "$dir" -type f -name 'tsan.*' | sort)
    if ((${#reports[@]} == 0)); then
        record "tsan reports" "OK (none)"
        return 0
    fi
    banner "tsan: ${#reports[@]} report file(s) in $dir"
    local r
    for r in "${reports[@]}"; do
        echo "---- $r"
        cat "$r"
    done
    record "tsan reports" "FAILED (${#reports[@]} file(s) in $dir)"
}

# skip_reason DIR NAME: the reason the skipped ctest entry NAME printed: its first line that
# starts with "SKIP NAME:" or "SKIP:", less that prefix (a test may log progress before it finds
# it cannot run), else its first line.
skip_reason() {
    awk -v want="$2" '
        /^[0-9]+\/[0-9]+ Test: / { cur = $3; out = 0; next }
        cur == want && /^Output:$/ { out = 1; next }
        out == 1 && /^-+$/ { out = 2; next }
        out == 2 && /^<end of output>$/ { exit }
        out == 2 && /^SKIP[^:]*:/ { sub(/^SKIP[^:]*: */, ""); why = $0; exit }
        out == 2 && NF > 0 && first == "" { first = $0 }
        END { print (why != "" ? why : first) }
    ' "$1/Testing/Temporary/LastTest.log" 2>/dev/null || true
}

format_check
build_and_test release build -DCMAKE_BUILD_TYPE=Release || true
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build_and_test asan build-asan -DSPLICER_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug || true
tsan_stage

banner summary
printf '%s\n' "${results[@]}"
if ((${#skip_order[@]} > 0)); then
    echo "skipped (could not run here; not counted as passed):"
    for n in "${skip_order[@]}"; do
        printf '  %s (%s): %s\n' "$n" "${skip_in[$n]}" "${skip_why[$n]}"
    done
fi
echo "ctest logs: $LOG_DIR; total time $(duration "$SECONDS")"
if ((failures > 0)); then
    echo "test.sh: FAILED ($failures stage(s))"
else
    echo "test.sh: all OK"
fi
# Last, and in this exact shape, so that CI can read the totals of the ctest runs.
echo "tests: $passed passed, $failed failed, $skipped skipped"
((failures == 0))
