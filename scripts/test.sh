#!/usr/bin/env bash
# test.sh: everything CI checks. Installs missing packages (deps.sh), checks C formatting when
# clang-format is installed, then builds and runs every ctest suite twice: a Release build in
# build/ and an ASan+UBSan Debug build in build-asan/. Exits non-zero if anything failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_DIR=${TEST_LOG_DIR:-$PWD/build-logs}
JOBS=${TEST_JOBS:-2}

# Real peers for the tests that would otherwise be skipped: prometheus (promtool validates the
# /metrics exposition; a real server scrapes it), haproxy (PROXY protocol interop), openssl and
# curl (TLS backends and clients for SNI routing). clang-format checks the formatting below.
scripts/deps.sh prometheus clang-format haproxy openssl curl
mkdir -p "$LOG_DIR"

results=()   # one "name: OK|FAILED|..." line per stage, for the summary
declare -A skip_why skip_in # skipped ctest entry -> its reason, and the builds that skipped it
skip_order=()
failures=0
passed=0
failed=0
skipped=0

record() {
    results+=("$(printf '%-22s %s' "$1" "$2")")
    if [[ $2 != OK* && $2 != skipped* ]]; then
        failures=$((failures + 1))
    fi
}

banner() { printf '\n==== %s ====\n' "$*"; }

format_check() {
    banner "clang-format"
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
        record format "OK (${#files[@]} files)"
    else
        echo "fix with: clang-format -i <file>"
        record format FAILED
    fi
}

# build_and_test NAME DIR [cmake args...]: configure, build and run ctest; records each step.
build_and_test() {
    local name=$1 dir=$2
    shift 2
    banner "$name: configure and build ($dir)"
    if ! cmake -S . -B "$dir" "$@" || ! cmake --build "$dir" -j"$JOBS"; then
        record "$name build" FAILED
        record "$name tests" "not run"
        return 0
    fi
    record "$name build" OK

    banner "$name: ctest"
    local log=$LOG_DIR/ctest-$name.log rc=0
    ctest --test-dir "$dir" --output-on-failure --no-tests=error 2>&1 | tee "$log" ||
        rc=$?
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
        record "$name tests" "OK ($p passed, $s skipped)"
    else
        record "$name tests" "FAILED ($f of $((p + f)) failed, $s skipped, rc $rc)"
    fi
}

# skip_reason DIR NAME: the first line the skipped ctest entry NAME printed (the reason), less
# a leading "SKIP NAME:" or "SKIP:".
skip_reason() {
    awk -v want="$2" '
        /^[0-9]+\/[0-9]+ Test: / { cur = $3; out = 0; next }
        cur == want && /^Output:$/ { out = 1; next }
        out == 1 && /^-+$/ { out = 2; next }
        out == 2 && /^<end of output>$/ { exit }
        out == 2 && NF > 0 { sub(/^SKIP[^:]*: */, ""); print; exit }
    ' "$1/Testing/Temporary/LastTest.log" 2>/dev/null || true
}

format_check
build_and_test release build -DCMAKE_BUILD_TYPE=Release
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build_and_test asan build-asan -DSPLICER_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug

banner summary
printf '%s\n' "${results[@]}"
if ((${#skip_order[@]} > 0)); then
    echo "skipped (could not run here; not counted as passed):"
    for n in "${skip_order[@]}"; do
        printf '  %s (%s): %s\n' "$n" "${skip_in[$n]}" "${skip_why[$n]}"
    done
fi
echo "ctest logs: $LOG_DIR"
if ((failures > 0)); then
    echo "test.sh: FAILED ($failures stage(s))"
else
    echo "test.sh: all OK"
fi
# Last, and in this exact shape, so that CI can read the totals of both ctest runs.
echo "tests: $passed passed, $failed failed, $skipped skipped"
((failures == 0))
