#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer targets of tests/fuzz with clang and runs each in turn.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     fuzz each target for SECONDS of CPU (default 60)
#   scripts/fuzz.sh --coverage [TARGET...]    line coverage of the parsers by the corpora
#   scripts/fuzz.sh --merge [TARGET...]       minimise the working corpora into tests/fuzz/corpus
#
# Targets: each tests/fuzz/fuzz_<t>.c (all by default): proxy_proto tls_sni scalars config
# accesslog. A dictionary tests/fuzz/<t>.dict (YAML keys and syntax for config) is used if there. One target runs at a
# time, on one core, under `nice -n 10`. Each starts from the committed corpus
# (tests/fuzz/corpus/<t>) and the regression inputs (tests/fuzz/regressions/<t>), and grows a
# working corpus in build-fuzz/work/<t> that later runs continue from. A crash, a failed property,
# a timeout (-timeout) or memory over -rss_limit_mb leaves its input in build-fuzz/artifacts/<t>/
# and makes the script exit 1: fix the cause, then keep the input as
# tests/fuzz/regressions/<t>/<name> so that CI replays it (ctest fuzz.<t>).
#
# Printed per target: CPU and wall seconds, executions, executions per second, corpus size and
# new crashes. SECONDS counts the fuzzer's CPU time, so that a run on a busy shared machine still
# does the work asked for; FUZZ_WALL_MAX (default 10 x SECONDS) caps the wall clock.
# --coverage builds build-fuzz-cov with clang's source coverage, runs every corpus and working
# corpus input once, and prints llvm-cov's line coverage of each parser source.
# Needs clang, libclang-rt-14-dev (libFuzzer) and llvm (llvm-profdata, llvm-cov): installed
# through scripts/deps.sh when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
COV_BUILD=${FUZZ_COV_BUILD:-$ROOT/build-fuzz-cov}
mapfile -t ALL < <(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||')

# The sources each target tests, for the coverage report.
declare -A SOURCES=(
    [proxy_proto]="proxy/proxy_proto.c proxy/inspect.c"
    [tls_sni]="proxy/tls_sni.c proxy/inspect.c"
    [scalars]="proxy/parse.c proxy/cidr.c"
    [config]="$(echo proxy/config*.c)"
    [accesslog]="proxy/accesslog.c"
)
# Input size caps: a little over the largest input each parser reads.
declare -A MAX_LEN=([proxy_proto]=512 [tls_sni]=4096 [scalars]=128 [config]=4096 [accesslog]=1024)

mode=fuzz
seconds=60
case ${1:-} in
--coverage) mode=coverage && shift ;;
--merge) mode=merge && shift ;;
'' | *[!0-9]*) ;;
*) seconds=$1 && shift ;;
esac
targets=("$@")
((${#targets[@]} > 0)) || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
    [[ -f tests/fuzz/fuzz_$t.c ]] || { echo "fuzz.sh: no target '$t' (tests/fuzz/fuzz_$t.c)" >&2; exit 2; }
done

scripts/deps.sh clang libclang-rt-14-dev llvm

configure() { # DIR [cmake args...]
    local dir=$1
    shift
    cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSPLICER_TESTS=OFF \
        -DSPLICER_FUZZ=ON "$@" >/dev/null
    cmake --build "$dir" -j"${FUZZ_JOBS:-2}" --target "${targets[@]/#/fuzz_}" >/dev/null
}

inputs() { # TARGET: the directories holding its inputs
    local d
    for d in "tests/fuzz/corpus/$1" "tests/fuzz/regressions/$1" "$BUILD/work/$1"; do
        [[ -d $d ]] && echo "$d"
    done
    return 0
}

# stat::number_of_executed_units: 123 -> 123
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

# CPU seconds (user + system) the process has used so far, from /proc.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) / hz }' "/proc/$1/stat"; }

# Runs one target until it has used SECONDS of CPU (not of wall clock: on a shared machine a
# niced fuzzer gets what others leave), or FUZZ_WALL_MAX seconds of wall clock have passed, then
# stops it with SIGINT, on which libFuzzer prints its final statistics.
fuzz_one() { # TARGET LOG
    local t=$1 log=$2 work=$BUILD/work/$1 art=$BUILD/artifacts/$1 pid cpu=0 start=$SECONDS
    local dict=()
    [[ -f tests/fuzz/$t.dict ]] && dict=(-dict="tests/fuzz/$t.dict")
    # -timeout and -rss_limit_mb make work out of proportion to the input a finding too
    nice -n 10 "$BUILD/fuzz_$t" -max_len="${MAX_LEN[$t]}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" \
        "$work" "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t" >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        cpu=$(cpu_seconds "$pid" 2>/dev/null || echo "$cpu")
        if ((cpu >= seconds || SECONDS - start >= ${FUZZ_WALL_MAX:-$((seconds * 10))})); then
            kill -INT "$pid" 2>/dev/null || true
            break
        fi
        sleep 2
    done
    wait "$pid" || true
    echo "$cpu $((SECONDS - start))"
}

run_fuzz() {
    configure "$BUILD" -DSPLICER_FUZZ_COVERAGE=OFF
    local failures=0 t
    printf '%-12s %8s %8s %12s %9s %8s %s\n' target cpu_s wall_s executions exec/s corpus crashes
    for t in "${targets[@]}"; do
        local work=$BUILD/work/$t art=$BUILD/artifacts/$t log
        log=$BUILD/logs/$t.$(date +%Y%m%d-%H%M%S).log
        mkdir -p "$work" "$art" "$BUILD/logs"
        local before times execs rate crashes
        before=$(find "$art" -type f | wc -l)
        times=$(fuzz_one "$t" "$log")
        execs=$(stat number_of_executed_units "$log")
        rate=$(stat average_exec_per_sec "$log")
        crashes=$(($(find "$art" -type f | wc -l) - before))
        printf '%-12s %8s %8s %12s %9s %8s %s\n' "$t" ${times} "${execs:-?}" "${rate:-?}" \
            "$(find "$work" -type f | wc -l)" "$crashes"
        if ((crashes > 0)) || [[ -z $execs ]]; then
            failures=$((failures + 1))
            echo "  see $log and $art/" >&2
        fi
    done
    ((failures == 0))
}

# Adds to tests/fuzz/corpus/<t> the working-corpus inputs that reach code or features the
# committed corpus does not (libFuzzer -merge=1, smallest inputs first). The committed files,
# the named seeds among them, stay.
run_merge() {
    configure "$BUILD" -DSPLICER_FUZZ_COVERAGE=OFF
    local t
    for t in "${targets[@]}"; do
        local out=tests/fuzz/corpus/$t before
        before=$(find "$out" -type f ! -name '.*' | wc -l)
        nice -n 10 "$BUILD/fuzz_$t" -merge=1 -max_len="${MAX_LEN[$t]}" "$out" "$BUILD/work/$t" \
            >"$BUILD/logs/$t.merge.log" 2>&1
        echo "$t: $(find "$out" -type f ! -name '.*' | wc -l) inputs ($before before)," \
            "$(cat "$out"/* | wc -c) bytes in $out"
    done
}

run_coverage() {
    configure "$COV_BUILD" -DSPLICER_FUZZ_COVERAGE=ON
    local t
    for t in "${targets[@]}"; do
        local prof=$COV_BUILD/prof/$t
        rm -rf "$prof" && mkdir -p "$prof"
        mapfile -t dirs < <(inputs "$t")
        LLVM_PROFILE_FILE="$prof/%p.profraw" "$COV_BUILD/fuzz_$t" -runs=0 \
            -max_len="${MAX_LEN[$t]}" "${dirs[@]}" >"$prof/run.log" 2>&1
        llvm-profdata merge -sparse "$prof"/*.profraw -o "$prof/merged.profdata"
        echo "== $t (${dirs[*]})"
        # shellcheck disable=SC2086 # the list of sources is meant to split
        llvm-cov report "$COV_BUILD/fuzz_$t" -instr-profile="$prof/merged.profdata" \
            ${SOURCES[$t]} | awk 'NR == 1 || /\.c /' |
            awk 'NR == 1 { print "file                    lines  covered  line coverage"; next }
                 { printf "%-22s %6d %8d  %s\n", $1, $8, $8 - $9, $10 }'
    done
}

case $mode in
fuzz) run_fuzz ;;
merge) run_merge ;;
coverage) run_coverage ;;
esac
